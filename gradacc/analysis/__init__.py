"""Pure functions from result tables (pandas DataFrames) to numbers, text and figures: compare, the Part 4
communication model (commmodel), the report and its sections (report), the plots (plots: one module per
figure family, the only place here that imports matplotlib).

Imports neither torch nor mlflow nor click: it gets DataFrames. Uses gradacc.core.config and gradacc.names."""
