"""`make run`: the whole stack on one machine, embedded services where none are configured."""
