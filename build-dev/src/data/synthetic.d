build-dev/src/data/synthetic.o: src/data/synthetic.c \
 include/raffle/data.h include/raffle/core.h
include/raffle/data.h:
include/raffle/core.h:
