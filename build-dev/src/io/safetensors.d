build-dev/src/io/safetensors.o: src/io/safetensors.c \
 include/raffle/safetensors.h include/raffle/core.h include/raffle/nn.h \
 include/raffle/ckpt.h src/io/model_names.h
include/raffle/safetensors.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/ckpt.h:
src/io/model_names.h:
