//! Test clocks: create, read (with the status of the work they triggered), advance.

use super::create_once;
use crate::audit::Context;
use crate::billing::clock_status;
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::ports::{Ports, Write};
use crate::tenant::Mode;
use crate::test_clock::{ClockFailure, ClockStatus, TestClock};
use chrono::{DateTime, Utc};

/// A test clock with its derived status (and, when it failed, why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockView {
    pub clock: TestClock,
    pub status: ClockStatus,
    pub failures: Vec<ClockFailure>,
}

fn test_mode_only(ctx: &Context) -> DomainResult<()> {
    if ctx.scope.mode == Mode::Live {
        return Err(DomainError::invalid("livemode_not_allowed", "test clocks exist only in test mode", None));
    }
    Ok(())
}

pub async fn create_clock(
    p: &Ports<'_>,
    ctx: &Context,
    frozen_time: DateTime<Utc>,
    name: Option<String>,
) -> DomainResult<ClockView> {
    test_mode_only(ctx)?;
    let clock = TestClock::new(ctx.new_id(p.ids, IdKind::TestClock), name, frozen_time, p.clock.now())?;
    let event = ctx.snapshot(p.ids, p.clock.now(), "test_clock.created", &clock);
    let writes = vec![Write::TestClock { clock: clock.clone(), expected: None }];
    let id = clock.id.clone();
    let clock = create_once(p, ctx, clock, writes, vec![event], || p.clocks.get(&ctx.scope, &id)).await?;
    Ok(ClockView { clock, status: ClockStatus::Ready, failures: Vec::new() })
}

pub async fn get_clock(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<ClockView> {
    let id = Id::parse(IdKind::TestClock, raw, "")?;
    let clock = p.clocks.get(&ctx.scope, &id).await?.ok_or_else(|| DomainError::not_found("test_clock", raw))?;
    let (status, failures) = clock_status(p, &ctx.scope, &clock).await?;
    Ok(ClockView { clock, status, failures })
}

/// Moves the clock. Its `test_clock.advanced` announcement (from the outbox) runs the billing tick
/// and the retry sweeper for it, through the same queues and functions as real time.
pub async fn advance_clock(p: &Ports<'_>, ctx: &Context, raw: &str, to: DateTime<Utc>) -> DomainResult<ClockView> {
    let ClockView { mut clock, status, .. } = get_clock(p, ctx, raw).await?;
    let expected = clock.version;
    clock.advance(to, status)?;
    let event = ctx.snapshot(p.ids, p.clock.now(), "test_clock.advanced", &clock);
    p.unit
        .commit(&ctx.scope, vec![Write::TestClock { clock: clock.clone(), expected: Some(expected) }], vec![event])
        .await?;
    // Until the tick has run, its work is visible as due: the clock reads as advancing.
    let (status, failures) = clock_status(p, &ctx.scope, &clock).await?;
    Ok(ClockView { clock, status, failures })
}
