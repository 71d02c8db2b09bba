"""Page layouts: functions from (URL state, AppContext) to a component tree; no callbacks here."""
