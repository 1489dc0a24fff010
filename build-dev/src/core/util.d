build-dev/src/core/util.o: src/core/util.c include/raffle/core.h
include/raffle/core.h:
