//! The dashboard embeds its web bundle; say how to make it when it is missing.

fn main() {
    for file in ["index.html", "app.js", "app.css"] {
        let path = std::path::Path::new("web/dist").join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        assert!(
            path.exists(),
            "{} is missing: build the dashboard's web bundle first (bash infra/local/dashboard-assets.sh; \
             `make run`, `make test` and `make bench` do it)",
            path.display()
        );
    }
}
