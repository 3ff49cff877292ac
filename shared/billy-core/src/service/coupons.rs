//! Coupons: create, get, list. A coupon is immutable once made.

use super::{create_once, missing};
use crate::audit::Context;
use crate::coupon::{Coupon, CouponDuration, Off};
use crate::error::DomainResult;
use crate::ids::{Id, IdKind};
use crate::page::{Page, PageRequest};
use crate::ports::{Ports, Write};

pub async fn create_coupon(
    p: &Ports<'_>,
    ctx: &Context,
    name: &str,
    off: Off,
    duration: CouponDuration,
) -> DomainResult<Coupon> {
    let now = p.clock.now();
    let coupon = Coupon::new(ctx.new_id(p.ids, IdKind::Coupon), name, off, duration, now, ctx.scope.livemode())?;
    let event = ctx.snapshot(p.ids, now, "coupon.created", &coupon);
    let id = coupon.id.clone();
    let writes = vec![Write::Coupon { coupon: coupon.clone() }];
    create_once(p, ctx, coupon, writes, vec![event], || p.coupons.get(&ctx.scope, &id)).await
}

pub async fn get_coupon(p: &Ports<'_>, ctx: &Context, raw: &str, param: &str) -> DomainResult<Coupon> {
    let id = Id::parse(IdKind::Coupon, raw, param)?;
    p.coupons.get(&ctx.scope, &id).await?.ok_or_else(|| missing("coupon", raw, param))
}

pub async fn list_coupons(p: &Ports<'_>, ctx: &Context, page: &PageRequest) -> DomainResult<Page<Coupon>> {
    p.coupons.list(&ctx.scope, page).await
}
