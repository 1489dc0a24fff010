build-dev/src/data/npy.o: src/data/npy.c include/raffle/data.h \
 include/raffle/core.h
include/raffle/data.h:
include/raffle/core.h:
