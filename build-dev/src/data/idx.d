build-dev/src/data/idx.o: src/data/idx.c include/raffle/data.h \
 include/raffle/core.h
include/raffle/data.h:
include/raffle/core.h:
