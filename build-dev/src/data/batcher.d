build-dev/src/data/batcher.o: src/data/batcher.c include/raffle/data.h \
 include/raffle/core.h
include/raffle/data.h:
include/raffle/core.h:
