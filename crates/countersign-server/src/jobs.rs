//! Background work, started and stopped together: following the log and fanning its events
//! out to approver streams (delivery), expiring requests on time with no traffic, reloading the
//! policy file, and notices to outbound channels when any are configured.

use std::time::Duration;

use countersign_core::{Actor, EventKind, PolicyOutcome, TimedStep};
use countersign_store::{NewEvent, RequestRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// The running background tasks of one service process; dropping them stops them.
pub struct Jobs {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Jobs {
    /// Delivery alone: the log follower and the approver fan-out, which waiters and streams
    /// need (for a state served through [`crate::router`] by the caller). The follower starts
    /// at the log's end as read now.
    pub async fn delivery(state: &AppState) -> Self {
        let (stop, stopped) = watch::channel(false);
        let start = state.store.audit_size().await.ok();
        let tasks = vec![
            tokio::spawn(crate::follow::run(
                state.clone(),
                start,
                state.store.log_changes(),
                stopped.clone(),
            )),
            tokio::spawn(crate::fanout::run(
                state.clone(),
                state.events.subscribe(),
                state.notices.clone(),
                stopped,
            )),
        ];
        Self { stop, tasks }
    }

    /// Everything a serving process runs: delivery, expiry and policy reload.
    pub async fn all(state: &AppState) -> Self {
        let mut jobs = Self::delivery(state).await;
        let stopped = jobs.stop.subscribe();
        jobs.tasks
            .push(tokio::spawn(expiry(state.clone(), stopped.clone())));
        jobs.tasks
            .push(tokio::spawn(timed_steps(state.clone(), stopped.clone())));
        jobs.start_channels(state);
        jobs.tasks
            .push(tokio::spawn(policy_reload(state.clone(), stopped)));
        jobs
    }

    /// Adds the outbound notice channels' tasks (filling the outbox from the log, sending what
    /// is due), when any channel is configured.
    pub fn start_channels(&mut self, state: &AppState) {
        if state.config.channels.channels.is_empty() {
            return;
        }
        let stopped = self.stop.subscribe();
        self.tasks
            .push(tokio::spawn(crate::channels::delivery::enqueue(
                state.clone(),
                stopped.clone(),
            )));
        self.tasks
            .push(tokio::spawn(crate::channels::delivery::send(
                state.clone(),
                stopped,
            )));
    }

    /// Stops every task and waits for them to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

const EXPIRY_TICK: Duration = Duration::from_millis(200);
const POLICY_TICK: Duration = Duration::from_secs(1);

/// Expires due requests. Runs on every replica; the store makes each expiry happen once.
pub async fn expiry(state: AppState, mut stop: watch::Receiver<bool>) {
    let event_for = |action_id| NewEvent::new(Actor::System, EventKind::Expired { action_id });
    loop {
        let now = state.now();
        match state.store.next_expiry().await {
            Ok(Some(at)) if at <= now => match state.store.expire_due(now, &event_for).await {
                Ok(events) => {
                    for e in &events {
                        tracing::info!(action = ?e.event.action_id(), "request expired");
                    }
                    state.publish(&events);
                }
                Err(e) => tracing::error!(error = %e, "expiring requests failed; will retry"),
            },
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "reading the next expiry failed; will retry"),
        }
        tokio::select! {
            () = tokio::time::sleep(EXPIRY_TICK) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Takes due escalation steps and reminders of pending requests, each an audit event before
/// it has any effect (the added groups may decide from that event on). Runs on every replica;
/// the store takes each step once.
pub async fn timed_steps(state: AppState, mut stop: watch::Receiver<bool>) {
    let event_for = |record: &RequestRecord, step: TimedStep| {
        let action_id = record.action.id;
        let event = match step {
            TimedStep::Escalate(i) => {
                let planned = match &record.action.policy.outcome {
                    PolicyOutcome::RequireApproval { escalation, .. } => escalation.get(i),
                    _ => None,
                };
                EventKind::Escalated {
                    action_id,
                    step: u32::try_from(i).unwrap_or(u32::MAX),
                    added_groups: planned.map(|s| s.add_groups.clone()).unwrap_or_default(),
                    notified: planned.map(|s| s.notify.clone()).unwrap_or_default(),
                }
            }
            TimedStep::Remind(seconds_left) => EventKind::Reminded {
                action_id,
                seconds_left,
            },
        };
        NewEvent::new(Actor::System, event)
    };
    loop {
        let now = state.now();
        match state.store.next_step().await {
            Ok(Some(at)) if at <= now => match state.store.take_due_steps(now, &event_for).await {
                Ok(events) => {
                    for e in &events {
                        tracing::info!(action = ?e.event.action_id(), kind = e.event.type_name(), "timed step taken");
                    }
                    state.publish(&events);
                }
                Err(e) => {
                    tracing::error!(error = %e, "taking escalations and reminders failed; will retry")
                }
            },
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading the next escalation or reminder failed; will retry")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EXPIRY_TICK) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Reloads the policy file when it changes; every change is an audit event. A broken file is
/// logged and the last good policy stays in force.
pub async fn policy_reload(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLICY_TICK) => {}
            _ = stop.changed() => return,
        }
        match state.policy.reload() {
            Ok(Some((old, new))) => {
                let event = NewEvent::new(
                    Actor::System,
                    EventKind::PolicyChanged {
                        previous_hash: Some(old),
                        policy_hash: new,
                    },
                );
                match state.store.append_events(vec![event], state.now()).await {
                    Ok(events) => {
                        tracing::info!(%old, %new, "policy reloaded");
                        state.publish(&events);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "policy changed but the audit event failed")
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "policy file is broken; keeping the last good policy")
            }
        }
    }
}
