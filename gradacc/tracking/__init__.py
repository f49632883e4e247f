"""The only floor that imports mlflow: the run writer (runs), the store's access rules (store), runs saved on
disk when the store does not answer (offline, upload) and the reader (results).

Imports gradacc.core.errors and gradacc.names only; reached from study, bench, distributed and cli."""
