build-dev/src/store/store.o: src/store/store.c include/raffle/store.h \
 include/raffle/core.h
include/raffle/store.h:
include/raffle/core.h:
