//! Plans: create, get, list. A plan the billing pipeline cannot bill is refused at creation.

use super::{create_once, missing};
use crate::audit::Context;
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::plan::{NewPlan, Plan, PlanKind};
use crate::ports::{Ports, Write};

pub async fn create_plan(p: &Ports<'_>, ctx: &Context, input: NewPlan) -> DomainResult<Plan> {
    if matches!(input.kind, PlanKind::MeteredDebit { .. } | PlanKind::MeteredPayout { .. }) {
        return Err(DomainError::invalid(
            "plan_unsupported",
            "usage-priced plans cannot be billed by this deployment yet; use fixed_debit or fixed_payout",
            Some("kind"),
        ));
    }
    let now = p.clock.now();
    let plan = Plan::new(ctx.new_id(p.ids, IdKind::Plan), input, now, ctx.scope.livemode())?;
    let event = ctx.snapshot(p.ids, now, "plan.created", &plan);
    let id = plan.id.clone();
    let writes = vec![Write::Plan { plan: plan.clone() }];
    create_once(p, ctx, plan, writes, vec![event], || p.plans.get(&ctx.scope, &id)).await
}

pub async fn get_plan(p: &Ports<'_>, ctx: &Context, raw: &str, param: &str) -> DomainResult<Plan> {
    let id = Id::parse(IdKind::Plan, raw, param)?;
    p.plans.get(&ctx.scope, &id).await?.ok_or_else(|| missing("plan", raw, param))
}
