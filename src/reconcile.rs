//! The effect shell: one reconcile pass reads the snapshot and HAProxy, plans, applies, and
//! writes the files; the loop runs a pass on every change (debounced) and on a resync timer.
