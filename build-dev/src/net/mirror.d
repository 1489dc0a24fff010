build-dev/src/net/mirror.o: src/net/mirror.c include/raffle/net.h \
 include/raffle/core.h
include/raffle/net.h:
include/raffle/core.h:
