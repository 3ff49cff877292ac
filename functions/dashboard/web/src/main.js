//! Entry point: the customer portal under /portal, the operator dashboard everywhere else.
import "./styles.css";
import { startDashboard } from "./dashboard/app.js";
import { startPortal } from "./portal.js";

const root = document.getElementById("app");
if (location.pathname.startsWith("/portal")) startPortal(root);
else startDashboard(root);
