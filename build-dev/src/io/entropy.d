build-dev/src/io/entropy.o: src/io/entropy.c src/io/entropy.h \
 include/raffle/core.h
src/io/entropy.h:
include/raffle/core.h:
