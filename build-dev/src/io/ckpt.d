build-dev/src/io/ckpt.o: src/io/ckpt.c include/raffle/ckpt.h \
 include/raffle/core.h src/io/entropy.h
include/raffle/ckpt.h:
include/raffle/core.h:
src/io/entropy.h:
