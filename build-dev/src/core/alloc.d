build-dev/src/core/alloc.o: src/core/alloc.c include/raffle/core.h
include/raffle/core.h:
