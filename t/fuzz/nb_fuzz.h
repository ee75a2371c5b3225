/*
 * nb_maint fuzz targets (t/fuzz/nb_fuzz.c): each takes one input.
 */

#ifndef _NB_FUZZ_H_INCLUDED_
#define _NB_FUZZ_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>

int nb_fuzz_admin(const uint8_t *data, size_t size);
int nb_fuzz_admin_body(const uint8_t *data, size_t size);
int nb_fuzz_node_id(const uint8_t *data, size_t size);
int nb_fuzz_accept(const uint8_t *data, size_t size);
int nb_fuzz_cookie(const uint8_t *data, size_t size);
int nb_fuzz_state(const uint8_t *data, size_t size);
int nb_fuzz_redis(const uint8_t *data, size_t size);
int nb_fuzz_agent(const uint8_t *data, size_t size);
int nb_fuzz_ws(const uint8_t *data, size_t size);

#endif /* _NB_FUZZ_H_INCLUDED_ */
