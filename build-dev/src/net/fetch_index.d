build-dev/src/net/fetch_index.o: src/net/fetch_index.c \
 include/raffle/net.h include/raffle/core.h
include/raffle/net.h:
include/raffle/core.h:
