build-dev/src/net/sha256.o: src/net/sha256.c include/raffle/net.h \
 include/raffle/core.h
include/raffle/net.h:
include/raffle/core.h:
