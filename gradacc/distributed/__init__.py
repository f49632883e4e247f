"""Real synchronous SGD through torch.distributed: the rank's loop (rank), the torchrun worker (worker), the
launcher that starts torchrun (launch), and the accumulation-against-DDP check (verify).

Imports study, tracking, parts and core; never cli or bench, and not click."""
