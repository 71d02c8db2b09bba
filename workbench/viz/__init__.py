"""Pure figure builders: DataFrame in, plotly Figure out (no I/O); shared by notebooks and the app."""
