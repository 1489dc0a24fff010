build-dev/src/net/http.o: src/net/http.c include/raffle/net.h \
 include/raffle/core.h
include/raffle/net.h:
include/raffle/core.h:
