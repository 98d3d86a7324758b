//! Backend generations (HAProxy 3.4+). A backend's options (`balance`, a sticky cookie) and
//! its mode (task slots or one server at the VIP) live in its config section, which the
//! Runtime API cannot edit. Where HAProxy can create backends at runtime, a change of them is
//! a new backend beside the old one, `<service>:<n+1>` ([`BackendName::next_generation`]),
//! created and filled from the named defaults of its options; the hosts map then moves to it
//! (each entry one `set map`, the entries of one service in one batch), and the old one is
//! retired like a removed service's (unpublished, servers deleted once idle, `del backend`).
//! A stream through the old backend (a websocket, a long download) is never cut: its
//! retirement waits for it.
//!
//! The desired state names backends after their services; [`resolve`] renames them to the
//! backends HAProxy serves them from (or will, once created), so that the planner proper only
//! ever compares like with like.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::RuntimeBackends;
use crate::haproxy::{BackendState, ProxyState};
use crate::model::{BackendName, BackendSpec, Desired};

/// Whether the backend serving a service (`state`) gives way to its next generation to become
/// `spec`: its mode or options differ and HAProxy can create the new one at runtime.
pub(super) fn replaced(
    runtime: &RuntimeBackends,
    spec: &BackendSpec,
    state: &BackendState,
) -> bool {
    runtime.delete
        && runtime.create_from(&spec.options).is_some()
        && (state.mode != spec.mode || state.options != spec.options)
}

/// `desired` with each backend, and each hosts-map value naming it, renamed to the backend
/// that serves its service in `actual`: the newest generation HAProxy holds (highest `n`), or
/// the next one when that one cannot become what `desired` asks for at runtime (other options
/// or mode), HAProxy
/// can create backends (`runtime`, 3.4+) and has the named defaults for the new
/// options. A service HAProxy holds no backend for keeps its own name. Borrowed when nothing
/// is renamed (the steady state).
pub(super) fn resolve<'a>(
    actual: &ProxyState,
    desired: &'a Desired,
    runtime: &RuntimeBackends,
) -> Cow<'a, Desired> {
    let newest = actual.serving_by_service();
    let mut renamed: BTreeMap<&BackendName, BackendName> = BTreeMap::new();
    for (name, spec) in &desired.backends {
        let Some((current, state)) = newest.get(name.as_str()) else {
            continue;
        };
        if replaced(runtime, spec, state) {
            renamed.insert(name, current.next_generation());
        } else if *current != name {
            renamed.insert(name, (*current).clone());
        }
    }
    if renamed.is_empty() {
        return Cow::Borrowed(desired);
    }
    let mut out = desired.clone();
    out.backends = desired
        .backends
        .iter()
        .map(|(name, spec)| {
            let name = renamed.get(name).unwrap_or(name).clone();
            (name, spec.clone())
        })
        .collect();
    for value in out.hosts.values_mut() {
        if let Some(serving) = value.target_backend().and_then(|b| renamed.get(&b)) {
            *value = value.with_backend(serving);
        }
    }
    Cow::Owned(out)
}
