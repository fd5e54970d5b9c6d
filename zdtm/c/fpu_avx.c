/* fpu_avx: random values in ymm0-ymm15 (upper halves included), loaded in one asm block
 * that sends the ready message itself and spins until SIGTERM; then compared. */
#define _GNU_SOURCE
#include "fpu_common.h"

int main(int argc, char **argv)
{
	static unsigned char in[16][32], out[16][32];
	test_init("fpu_avx", argc, argv);
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx"))
		test_skip("cpu or kernel lacks avx");
	fill_random(in, sizeof(in));
	long fd = test_ready_fd();
	const char *message = test_ready_message();
	long len = (long)strlen(message);
	volatile int *flag = test_sig_flag();
	__asm__ volatile(
		"vmovdqu 0*32(%[in]), %%ymm0\n\t vmovdqu 1*32(%[in]), %%ymm1\n\t vmovdqu 2*32(%[in]), %%ymm2\n\t"
		"vmovdqu 3*32(%[in]), %%ymm3\n\t vmovdqu 4*32(%[in]), %%ymm4\n\t vmovdqu 5*32(%[in]), %%ymm5\n\t"
		"vmovdqu 6*32(%[in]), %%ymm6\n\t vmovdqu 7*32(%[in]), %%ymm7\n\t vmovdqu 8*32(%[in]), %%ymm8\n\t"
		"vmovdqu 9*32(%[in]), %%ymm9\n\t vmovdqu 10*32(%[in]), %%ymm10\n\t vmovdqu 11*32(%[in]), %%ymm11\n\t"
		"vmovdqu 12*32(%[in]), %%ymm12\n\t vmovdqu 13*32(%[in]), %%ymm13\n\t vmovdqu 14*32(%[in]), %%ymm14\n\t"
		"vmovdqu 15*32(%[in]), %%ymm15\n\t"
		"test %%rdi, %%rdi\n\t"
		"js 2f\n\t"
		SEND_READY_ASM
		"2:\n\t"
		SPIN_ASM("%[flag]")
		"vmovdqu %%ymm0, 0*32(%[out])\n\t vmovdqu %%ymm1, 1*32(%[out])\n\t vmovdqu %%ymm2, 2*32(%[out])\n\t"
		"vmovdqu %%ymm3, 3*32(%[out])\n\t vmovdqu %%ymm4, 4*32(%[out])\n\t vmovdqu %%ymm5, 5*32(%[out])\n\t"
		"vmovdqu %%ymm6, 6*32(%[out])\n\t vmovdqu %%ymm7, 7*32(%[out])\n\t vmovdqu %%ymm8, 8*32(%[out])\n\t"
		"vmovdqu %%ymm9, 9*32(%[out])\n\t vmovdqu %%ymm10, 10*32(%[out])\n\t vmovdqu %%ymm11, 11*32(%[out])\n\t"
		"vmovdqu %%ymm12, 12*32(%[out])\n\t vmovdqu %%ymm13, 13*32(%[out])\n\t vmovdqu %%ymm14, 14*32(%[out])\n\t"
		"vmovdqu %%ymm15, 15*32(%[out])\n\t"
		"vzeroupper\n\t"
		:
		: [in] "r"(in), [out] "r"(out), [flag] "r"(flag), "D"(fd), "S"(message), "d"(len)
		: "rax", "rcx", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
		  "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	test_ready_sent();
	report_mismatch("ymm", &in[0][0], &out[0][0], 16, 32);
	pass();
}
