"""The protocol and its math: config, errors, runtime (device, threads, determinism), data (CIFAR-10 on disk ->
checked uint8 subset), streams, model, engine (THE update), timing, graphs, noise scale.

Lowest floor: imports only the standard library, numpy, torch, torchvision and gradacc.names; never mlflow,
matplotlib or click, and touches no device, disk or network at import."""
