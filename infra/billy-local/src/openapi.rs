//! Keeps the API's written contract (`docs/openapi.yaml`) true to the routes `template.yaml`
//! declares: every route is documented and every documented operation is routed, each with its
//! path parameters, a success answer, the errors its kind of route can give, and the
//! `Idempotency-Key` header on every authenticated write. The API is everything under `/v1`. (Whether the answers match their
//! schemas is what the contract fuzzing in `make test` checks against a live Billy.)

use crate::template::{EventSource, Template, TemplateError};
use serde_yaml::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The repository's OpenAPI document.
pub fn default_document_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.yaml")
}

/// Every `(METHOD, path)` of the API (`/v1/…`) the template routes. The dashboard's pages and
/// its cookie sessions (`/dashboard…`, `/portal…`) are the dashboard's own, not the API's contract.
pub fn routes(template: &Template) -> Result<BTreeSet<(String, String)>, TemplateError> {
    let mut out = BTreeSet::new();
    for f in template.functions()? {
        for (_, event) in f.events {
            if let EventSource::Http { method, path } = event
                && path.starts_with("/v1/")
            {
                out.insert((method, path));
            }
        }
    }
    Ok(out)
}

/// Follows a local `$ref` (`#/components/...`) once.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    let Some(reference) = value.get("$ref").and_then(Value::as_str) else { return value };
    let Some(path) = reference.strip_prefix("#/") else { return value };
    path.split('/').try_fold(document, |node, key| node.get(key)).unwrap_or(value)
}

/// Every finding: routes not documented, operations not routed, and operations missing what
/// their kind of route must document. Empty when the document is true to the template.
pub fn check(template: &Template, document: &Value) -> Result<Vec<String>, TemplateError> {
    let routed = routes(template)?;
    let mut findings = Vec::new();
    let mut documented = BTreeSet::new();
    if let Some(Value::Mapping(paths)) = document.get("paths") {
        for (path, item) in paths {
            let path = path.as_str().unwrap_or_default();
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let method = method.to_uppercase();
                documented.insert((method.clone(), path.to_owned()));
                findings.extend(check_operation(document, item, op, &method, path));
            }
        }
    }
    for (method, path) in routed.difference(&documented) {
        findings.push(format!("{method} {path} is routed in template.yaml but not documented in docs/openapi.yaml"));
    }
    for (method, path) in documented.difference(&routed) {
        findings.push(format!("{method} {path} is documented but template.yaml routes no such operation"));
    }
    Ok(findings)
}

fn check_operation(document: &Value, item: &Value, op: &Value, method: &str, path: &str) -> Vec<String> {
    let name = format!("{method} {path}");
    let mut findings = Vec::new();
    if op.get("operationId").and_then(Value::as_str).is_none_or(str::is_empty) {
        findings.push(format!("{name} has no operationId"));
    }
    let parameters: Vec<&Value> = [item.get("parameters"), op.get("parameters")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_sequence)
        .flatten()
        .map(|p| resolve(document, p))
        .collect();
    let declared = |location: &str, wanted: &str| {
        parameters.iter().any(|p| {
            p.get("in").and_then(Value::as_str) == Some(location)
                && p.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        })
    };
    let path_params: Vec<&str> = path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
    for param in &path_params {
        if !declared("path", param) {
            findings.push(format!("{name} does not declare its path parameter {{{param}}}"));
        }
    }
    let responses: BTreeSet<String> = op
        .get("responses")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned).or_else(|| k.as_u64().map(|n| n.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if !responses.iter().any(|code| code.starts_with('2')) {
        findings.push(format!("{name} documents no success answer"));
    }
    // An operation's own `security` overrides the document's (`[]`: no authentication).
    let secured = op
        .get("security")
        .or_else(|| document.get("security"))
        .and_then(Value::as_sequence)
        .is_some_and(|s| !s.is_empty());
    let mut must = vec!["500"];
    if secured {
        must.push("401");
    }
    if !path_params.is_empty() {
        must.push("404");
    }
    if method != "GET" || !parameters.iter().all(|p| p.get("in").and_then(Value::as_str) == Some("path")) {
        must.push("400");
    }
    for code in must {
        if !responses.contains(code) {
            findings.push(format!("{name} does not document its {code} answer"));
        }
    }
    let writes_with_key = secured && method != "GET" && path != "/v1/tenants";
    if writes_with_key && !declared("header", "Idempotency-Key") {
        findings.push(format!("{name} is a write but does not document the Idempotency-Key header"));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
  Things:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api-things
      Events:
        Get: { Type: HttpApi, Properties: { Path: "/v1/things/{id}", Method: GET } }
        Make: { Type: HttpApi, Properties: { Path: /v1/things, Method: POST } }
"#;

    fn document(extra: &str) -> Value {
        serde_yaml::from_str(&format!(
            r##"
openapi: 3.1.0
security: [{{bearer: []}}]
components:
  parameters:
    Key: {{ name: Idempotency-Key, in: header, schema: {{ type: string }} }}
paths:
  /v1/things/{{id}}:
    get:
      operationId: getThing
      parameters: [{{ name: id, in: path, required: true, schema: {{ type: string }} }}]
      responses: {{ "200": {{description: ok}}, "401": {{description: x}}, "404": {{description: x}}, "500": {{description: x}} }}
  /v1/things:
    post:
      operationId: makeThing
      parameters: [{{ $ref: "#/components/parameters/Key" }}]
      responses: {{ "201": {{description: ok}}, "400": {{description: x}}, "401": {{description: x}}, "500": {{description: x}} }}
{extra}"##
        ))
        .unwrap()
    }

    #[test]
    fn a_document_true_to_the_template_has_no_findings() {
        let template = Template::parse(TEMPLATE).unwrap();
        assert_eq!(check(&template, &document("")).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_route_added_without_documentation_and_an_operation_without_a_route_are_both_found() {
        let with_route = TEMPLATE.to_owned()
            + "        Drop: { Type: HttpApi, Properties: { Path: \"/v1/things/{id}\", Method: DELETE } }\n";
        let template = Template::parse(&with_route).unwrap();
        let extra = "  /v1/gone:\n    get:\n      operationId: gone\n      responses: { \"200\": {description: ok} }\n";
        let findings = check(&template, &document(extra)).unwrap();
        assert!(
            findings.contains(
                &"DELETE /v1/things/{id} is routed in template.yaml but not documented in docs/openapi.yaml".to_owned()
            ),
            "{findings:?}"
        );
        assert!(
            findings.contains(&"GET /v1/gone is documented but template.yaml routes no such operation".to_owned()),
            "{findings:?}"
        );
        assert!(findings.contains(&"GET /v1/gone does not document its 401 answer".to_owned()), "{findings:?}");
    }

    #[test]
    fn the_repositorys_document_covers_every_route_and_only_routes() {
        let template = Template::load(&crate::default_template_path()).unwrap();
        let text = std::fs::read_to_string(default_document_path()).expect("docs/openapi.yaml exists");
        let document: Value = serde_yaml::from_str(&text).expect("docs/openapi.yaml is YAML");
        assert_eq!(document["openapi"].as_str(), Some("3.1.0"));
        let findings = check(&template, &document).unwrap();
        assert!(findings.is_empty(), "docs/openapi.yaml is not true to template.yaml:\n{}", findings.join("\n"));
    }
}
