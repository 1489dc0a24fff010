/* Internal to src/io: the checkpoint / safetensors names of a layer's
 * non-trainable buffers, shared by model_io.c and safetensors.c so both
 * formats name them the same way (PyTorch's BN names). */
#ifndef RAFFLE_IO_MODEL_NAMES_H
#define RAFFLE_IO_MODEL_NAMES_H

#include "raffle/nn.h"

typedef struct rf_io_buf_slice { char name[RF_NAME_MAX + 16]; size_t offset, numel; } rf_io_buf_slice;
/* Fills out (room for 2) with the buffer slices of L; returns how many. */
int rf_io_layer_buffers(const rf_layer *L, rf_io_buf_slice *out);

#endif
