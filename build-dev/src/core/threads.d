build-dev/src/core/threads.o: src/core/threads.c include/raffle/threads.h \
 include/raffle/core.h
include/raffle/threads.h:
include/raffle/core.h:
