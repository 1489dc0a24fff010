build-dev/src/core/status.o: src/core/status.c include/raffle/core.h
include/raffle/core.h:
