/* fpu_common.h: what the register tests share: random register images and the
 * syscall sequence that sends the ready message from inside an asm block. */
#ifndef FPU_COMMON_H
#define FPU_COMMON_H

#include "zdtmtst.h"
#include <string.h>

static inline void fill_random(void *buffer, size_t bytes)
{
	uint64_t *words = buffer;
	for (size_t i = 0; i < bytes / 8; i++)
		words[i] = test_rand64();
}

static inline void report_mismatch(const char *what, const unsigned char *want, const unsigned char *got,
				   size_t count, size_t size)
{
	for (size_t i = 0; i < count; i++)
		if (memcmp(want + i * size, got + i * size, size))
			fail("%s%zu differs after restore", what, i);
}

/* write(rdi=fd, rsi=msg, rdx=len); close(rdi): only rax, rcx, r11 change. */
#define SEND_READY_ASM \
	"mov $1, %%eax\n\t" \
	"syscall\n\t" \
	"mov $3, %%eax\n\t" \
	"syscall\n\t"

/* Spin until the SIGTERM flag (pointer in FLAG) turns nonzero. */
#define SPIN_ASM(FLAG) \
	"1:\n\t" \
	"pause\n\t" \
	"cmpl $0, (" FLAG ")\n\t" \
	"je 1b\n\t"

#endif
