"""gradacc: synchronous data-parallel SGD simulated by gradient accumulation, tracked with MLflow."""
__version__ = "0.1.0"
