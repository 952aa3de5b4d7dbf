/* edgepack runtime: ADD, int8, 4-D broadcasting. */
#include "ep_broadcast.h"

ep_status ep_add_s8(const ep_add_params *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    return ep_add_sub_s8(p, input1, input2, output, 0);
}
