//! Plans: create, get, list.

use super::{create_once, missing};
use crate::audit::Context;
use crate::error::DomainResult;
use crate::ids::{Id, IdKind};
use crate::plan::{NewPlan, Plan};
use crate::ports::{Ports, Write};

pub async fn create_plan(p: &Ports<'_>, ctx: &Context, input: NewPlan) -> DomainResult<Plan> {
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
