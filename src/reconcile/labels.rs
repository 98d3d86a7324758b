//! Label memory across passes: the last good route of each service (which stands in for labels
//! that turn bad), and which problems were already logged, so a bad label is reported when it
//! appears, not on every pass.

use std::collections::BTreeMap;

use tracing::{error, info, warn};

use crate::model::labels::Severity;
use crate::model::{self, Desired, Snapshot};

#[derive(Debug, Default)]
pub(super) struct LabelMemory {
    /// Each service's part of the last desired routing, and that routing, whose routes are
    /// the last good ones of the next pass (see [`model::DesiredCache::next`]).
    cache: model::DesiredCache,
    /// Each problem logged and still there: its text -> (severity, service).
    reported: BTreeMap<String, (Severity, String)>,
    /// The last routing was not planned: the next one reports [`model::Change::All`].
    unplanned: bool,
}

impl LabelMemory {
    /// The routing Swarm asks for; logs label problems once, when they appear, and an error
    /// or warning again when it goes (its label fixed, or its service removed).
    pub fn desired(
        &mut self,
        snap: &Snapshot,
        settings: &model::Settings,
    ) -> (Desired, model::Change) {
        let (desired, mut change) = self.cache.next(snap, settings);
        if std::mem::take(&mut self.unplanned) {
            change = model::Change::All;
        }
        if change != model::Change::All {
            // The problems are the last pass's (a patch changes none).
            return (desired, change);
        }
        let mut now = BTreeMap::new();
        let problems = desired
            .errors
            .iter()
            .chain(&desired.warnings)
            .chain(&desired.notices);
        for problem in problems {
            let msg = problem.to_string();
            if !self.reported.contains_key(&msg) {
                match problem.severity() {
                    Severity::Error => error!(error = %msg, "label refused"),
                    Severity::Warning => warn!(warning = %msg, "label ignored or adjusted"),
                    Severity::Notice => {
                        info!(service = problem.service(), notice = %msg, "service not routed")
                    }
                }
            }
            now.insert(msg, (problem.severity(), problem.service().to_owned()));
        }
        for (msg, (severity, service)) in &self.reported {
            if !now.contains_key(msg) && *severity != Severity::Notice {
                info!(service = %service, was = %msg, "label problem gone (the labels or the service changed, or the service was removed)");
            }
        }
        self.reported = now;
        (desired, change)
    }

    /// The routing [`LabelMemory::desired`] gave last is not planned (a caller outside the
    /// passes asked for it): the next call reports every change as [`model::Change::All`].
    pub fn unplanned(&mut self) {
        self.unplanned = true;
    }
}
