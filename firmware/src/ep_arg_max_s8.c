/* edgepack runtime: ARG_MAX, int8 input, int32 indices (the first of equal maxima, as TFLM). */
#include "ep_internal.h"

ep_status ep_arg_max_s8(const ep_arg_params *p, const int8_t *input, int32_t *output)
{
    return ep_arg_extreme_s8(p, input, output, 1);
}
