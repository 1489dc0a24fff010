build-dev/src/core/rng.o: src/core/rng.c include/raffle/core.h
include/raffle/core.h:
