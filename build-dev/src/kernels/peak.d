build-dev/src/kernels/peak.o: src/kernels/peak.c \
 src/kernels/kern_internal.h include/raffle/kernels.h \
 include/raffle/core.h
src/kernels/kern_internal.h:
include/raffle/kernels.h:
include/raffle/core.h:
