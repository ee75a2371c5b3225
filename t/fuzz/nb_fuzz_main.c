/*
 * One libFuzzer binary per target: cc -DNB_FUZZ_TARGET=nb_fuzz_admin ...
 */

#include "nb_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return NB_FUZZ_TARGET(data, size);
}
