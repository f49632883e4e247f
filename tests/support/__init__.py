"""What the tests share: tiny data roots (cifar), temporary stores and CLI calls (e2e), synthetic compare stores
(compare), a local MLflow server (server), fake timers (fakes)."""
