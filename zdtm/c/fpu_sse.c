/* fpu_sse: random values in st0-st7, xmm0-xmm15, a non-default x87 control word and
 * MXCSR, all loaded in one asm block that sends the ready message itself and spins until
 * SIGTERM without touching them; then they are stored and compared. */
#define _GNU_SOURCE
#include "fpu_common.h"

#include <unistd.h>

struct sse_state {
	unsigned char xmm[16][16];
	unsigned char x87[8][16];
	uint32_t mxcsr;
	uint16_t fcw;
};

int main(int argc, char **argv)
{
	static struct sse_state in, out;
	test_init("fpu_sse", argc, argv);
	fill_random(in.xmm, sizeof(in.xmm));
	for (int i = 0; i < 8; i++) {
		uint64_t mantissa = test_rand64() | (1ULL << 63); /* normal number */
		uint16_t exponent = 0x3fff - 60 + (uint16_t)(test_rand64() % 120);
		exponent |= (uint16_t)(test_rand64() & 1) << 15; /* sign */
		memcpy(in.x87[i], &mantissa, 8);
		memcpy(in.x87[i] + 8, &exponent, 2);
	}
	/* All exceptions masked; random rounding and precision control. */
	in.fcw = 0x003f | 0x0040 | (uint16_t)((test_rand64() % 4) << 10) | (uint16_t)((2 + test_rand64() % 2) << 8);
	/* All exceptions masked; random rounding, FTZ and DAZ. */
	in.mxcsr = 0x1f80 | (uint32_t)((test_rand64() % 4) << 13) | (uint32_t)((test_rand64() & 1) << 15) |
		   (uint32_t)((test_rand64() & 1) << 6);

	long fd = test_ready_fd();
	const char *message = test_ready_message();
	long len = (long)strlen(message);
	volatile int *flag = test_sig_flag();
	__asm__ volatile(
		"fninit\n\t"
		"fldcw 384+4(%[in])\n\t"
		"ldmxcsr 384(%[in])\n\t"
		"fldt 256+0*16(%[in])\n\t fldt 256+1*16(%[in])\n\t fldt 256+2*16(%[in])\n\t fldt 256+3*16(%[in])\n\t"
		"fldt 256+4*16(%[in])\n\t fldt 256+5*16(%[in])\n\t fldt 256+6*16(%[in])\n\t fldt 256+7*16(%[in])\n\t"
		"movdqu 0*16(%[in]), %%xmm0\n\t movdqu 1*16(%[in]), %%xmm1\n\t movdqu 2*16(%[in]), %%xmm2\n\t"
		"movdqu 3*16(%[in]), %%xmm3\n\t movdqu 4*16(%[in]), %%xmm4\n\t movdqu 5*16(%[in]), %%xmm5\n\t"
		"movdqu 6*16(%[in]), %%xmm6\n\t movdqu 7*16(%[in]), %%xmm7\n\t movdqu 8*16(%[in]), %%xmm8\n\t"
		"movdqu 9*16(%[in]), %%xmm9\n\t movdqu 10*16(%[in]), %%xmm10\n\t movdqu 11*16(%[in]), %%xmm11\n\t"
		"movdqu 12*16(%[in]), %%xmm12\n\t movdqu 13*16(%[in]), %%xmm13\n\t movdqu 14*16(%[in]), %%xmm14\n\t"
		"movdqu 15*16(%[in]), %%xmm15\n\t"
		"test %%rdi, %%rdi\n\t"
		"js 2f\n\t"
		SEND_READY_ASM
		"2:\n\t"
		SPIN_ASM("%[flag]")
		"movdqu %%xmm0, 0*16(%[out])\n\t movdqu %%xmm1, 1*16(%[out])\n\t movdqu %%xmm2, 2*16(%[out])\n\t"
		"movdqu %%xmm3, 3*16(%[out])\n\t movdqu %%xmm4, 4*16(%[out])\n\t movdqu %%xmm5, 5*16(%[out])\n\t"
		"movdqu %%xmm6, 6*16(%[out])\n\t movdqu %%xmm7, 7*16(%[out])\n\t movdqu %%xmm8, 8*16(%[out])\n\t"
		"movdqu %%xmm9, 9*16(%[out])\n\t movdqu %%xmm10, 10*16(%[out])\n\t movdqu %%xmm11, 11*16(%[out])\n\t"
		"movdqu %%xmm12, 12*16(%[out])\n\t movdqu %%xmm13, 13*16(%[out])\n\t movdqu %%xmm14, 14*16(%[out])\n\t"
		"movdqu %%xmm15, 15*16(%[out])\n\t"
		"fstpt 256+0*16(%[out])\n\t fstpt 256+1*16(%[out])\n\t fstpt 256+2*16(%[out])\n\t fstpt 256+3*16(%[out])\n\t"
		"fstpt 256+4*16(%[out])\n\t fstpt 256+5*16(%[out])\n\t fstpt 256+6*16(%[out])\n\t fstpt 256+7*16(%[out])\n\t"
		"fnstcw 384+4(%[out])\n\t"
		"stmxcsr 384(%[out])\n\t"
		"fninit\n\t"
		"ldmxcsr %[default_mxcsr]\n\t"
		:
		: [in] "r"(&in), [out] "r"(&out), [flag] "r"(flag), "D"(fd), "S"(message), "d"(len),
		  [default_mxcsr] "m"((uint32_t){0x1f80})
		: "rax", "rcx", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
		  "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)",
		  "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
	test_ready_sent();

	report_mismatch("xmm", &in.xmm[0][0], &out.xmm[0][0], 16, 16);
	for (int i = 0; i < 8; i++)
		if (memcmp(in.x87[i], out.x87[7 - i], 10))
			fail("st%d differs after restore", i);
	if (out.fcw != in.fcw)
		fail("x87 control word %#x, was %#x", out.fcw, in.fcw);
	if (out.mxcsr != in.mxcsr)
		fail("mxcsr %#x, was %#x", out.mxcsr, in.mxcsr);
	pass();
}
