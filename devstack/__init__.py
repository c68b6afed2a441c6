"""`make run`: the whole stack on one machine, embedded services where none are configured;
and the stack builder it shares with the tests, the bench and the soak (services.py,
environment.py, processes.py, faultstack.py, ports.py)."""
