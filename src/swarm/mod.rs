//! The only code that imports bollard. Lists services, tasks and networks into a
//! [`crate::model::Snapshot`]; follows the event stream (reconnect with `since`, backoff);
//! polls a service's tasks after an event touches it until they settle; resyncs periodically.
//! Also attaches and detaches the HAProxy container to networks.
