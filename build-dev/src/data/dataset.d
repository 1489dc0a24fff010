build-dev/src/data/dataset.o: src/data/dataset.c include/raffle/data.h \
 include/raffle/core.h
include/raffle/data.h:
include/raffle/core.h:
