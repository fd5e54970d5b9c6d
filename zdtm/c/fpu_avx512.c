/* fpu_avx512: random values in zmm0-zmm31 and the opmask registers k0-k7, loaded in
 * one asm block that sends the ready message itself and spins until SIGTERM; then
 * compared. Skips where the CPU or kernel lacks AVX-512F/BW. */
#define _GNU_SOURCE
#include "fpu_common.h"

struct avx512_state {
	unsigned char zmm[32][64];
	uint64_t k[8];
};

__attribute__((target("avx512f,avx512bw"))) static void hold_registers(struct avx512_state *in,
									  struct avx512_state *out)
{
	long fd = test_ready_fd();
	const char *message = test_ready_message();
	long len = (long)strlen(message);
	volatile int *flag = test_sig_flag();
	__asm__ volatile(
		"vmovdqu64 0*64(%[in]), %%zmm0\n\t"
		"vmovdqu64 1*64(%[in]), %%zmm1\n\t"
		"vmovdqu64 2*64(%[in]), %%zmm2\n\t"
		"vmovdqu64 3*64(%[in]), %%zmm3\n\t"
		"vmovdqu64 4*64(%[in]), %%zmm4\n\t"
		"vmovdqu64 5*64(%[in]), %%zmm5\n\t"
		"vmovdqu64 6*64(%[in]), %%zmm6\n\t"
		"vmovdqu64 7*64(%[in]), %%zmm7\n\t"
		"vmovdqu64 8*64(%[in]), %%zmm8\n\t"
		"vmovdqu64 9*64(%[in]), %%zmm9\n\t"
		"vmovdqu64 10*64(%[in]), %%zmm10\n\t"
		"vmovdqu64 11*64(%[in]), %%zmm11\n\t"
		"vmovdqu64 12*64(%[in]), %%zmm12\n\t"
		"vmovdqu64 13*64(%[in]), %%zmm13\n\t"
		"vmovdqu64 14*64(%[in]), %%zmm14\n\t"
		"vmovdqu64 15*64(%[in]), %%zmm15\n\t"
		"vmovdqu64 16*64(%[in]), %%zmm16\n\t"
		"vmovdqu64 17*64(%[in]), %%zmm17\n\t"
		"vmovdqu64 18*64(%[in]), %%zmm18\n\t"
		"vmovdqu64 19*64(%[in]), %%zmm19\n\t"
		"vmovdqu64 20*64(%[in]), %%zmm20\n\t"
		"vmovdqu64 21*64(%[in]), %%zmm21\n\t"
		"vmovdqu64 22*64(%[in]), %%zmm22\n\t"
		"vmovdqu64 23*64(%[in]), %%zmm23\n\t"
		"vmovdqu64 24*64(%[in]), %%zmm24\n\t"
		"vmovdqu64 25*64(%[in]), %%zmm25\n\t"
		"vmovdqu64 26*64(%[in]), %%zmm26\n\t"
		"vmovdqu64 27*64(%[in]), %%zmm27\n\t"
		"vmovdqu64 28*64(%[in]), %%zmm28\n\t"
		"vmovdqu64 29*64(%[in]), %%zmm29\n\t"
		"vmovdqu64 30*64(%[in]), %%zmm30\n\t"
		"vmovdqu64 31*64(%[in]), %%zmm31\n\t"
		"kmovq 2048(%[in]), %%k0\n\t"
		"kmovq 2056(%[in]), %%k1\n\t"
		"kmovq 2064(%[in]), %%k2\n\t"
		"kmovq 2072(%[in]), %%k3\n\t"
		"kmovq 2080(%[in]), %%k4\n\t"
		"kmovq 2088(%[in]), %%k5\n\t"
		"kmovq 2096(%[in]), %%k6\n\t"
		"kmovq 2104(%[in]), %%k7\n\t"
		"test %%rdi, %%rdi\n\t"
		"js 2f\n\t"
		SEND_READY_ASM
		"2:\n\t"
		SPIN_ASM("%[flag]")
		"vmovdqu64 %%zmm0, 0*64(%[out])\n\t"
		"vmovdqu64 %%zmm1, 1*64(%[out])\n\t"
		"vmovdqu64 %%zmm2, 2*64(%[out])\n\t"
		"vmovdqu64 %%zmm3, 3*64(%[out])\n\t"
		"vmovdqu64 %%zmm4, 4*64(%[out])\n\t"
		"vmovdqu64 %%zmm5, 5*64(%[out])\n\t"
		"vmovdqu64 %%zmm6, 6*64(%[out])\n\t"
		"vmovdqu64 %%zmm7, 7*64(%[out])\n\t"
		"vmovdqu64 %%zmm8, 8*64(%[out])\n\t"
		"vmovdqu64 %%zmm9, 9*64(%[out])\n\t"
		"vmovdqu64 %%zmm10, 10*64(%[out])\n\t"
		"vmovdqu64 %%zmm11, 11*64(%[out])\n\t"
		"vmovdqu64 %%zmm12, 12*64(%[out])\n\t"
		"vmovdqu64 %%zmm13, 13*64(%[out])\n\t"
		"vmovdqu64 %%zmm14, 14*64(%[out])\n\t"
		"vmovdqu64 %%zmm15, 15*64(%[out])\n\t"
		"vmovdqu64 %%zmm16, 16*64(%[out])\n\t"
		"vmovdqu64 %%zmm17, 17*64(%[out])\n\t"
		"vmovdqu64 %%zmm18, 18*64(%[out])\n\t"
		"vmovdqu64 %%zmm19, 19*64(%[out])\n\t"
		"vmovdqu64 %%zmm20, 20*64(%[out])\n\t"
		"vmovdqu64 %%zmm21, 21*64(%[out])\n\t"
		"vmovdqu64 %%zmm22, 22*64(%[out])\n\t"
		"vmovdqu64 %%zmm23, 23*64(%[out])\n\t"
		"vmovdqu64 %%zmm24, 24*64(%[out])\n\t"
		"vmovdqu64 %%zmm25, 25*64(%[out])\n\t"
		"vmovdqu64 %%zmm26, 26*64(%[out])\n\t"
		"vmovdqu64 %%zmm27, 27*64(%[out])\n\t"
		"vmovdqu64 %%zmm28, 28*64(%[out])\n\t"
		"vmovdqu64 %%zmm29, 29*64(%[out])\n\t"
		"vmovdqu64 %%zmm30, 30*64(%[out])\n\t"
		"vmovdqu64 %%zmm31, 31*64(%[out])\n\t"
		"kmovq %%k0, 2048(%[out])\n\t"
		"kmovq %%k1, 2056(%[out])\n\t"
		"kmovq %%k2, 2064(%[out])\n\t"
		"kmovq %%k3, 2072(%[out])\n\t"
		"kmovq %%k4, 2080(%[out])\n\t"
		"kmovq %%k5, 2088(%[out])\n\t"
		"kmovq %%k6, 2096(%[out])\n\t"
		"kmovq %%k7, 2104(%[out])\n\t"
		"vzeroupper\n\t"
		:
		: [in] "r"(in), [out] "r"(out), [flag] "r"(flag), "D"(fd), "S"(message), "d"(len)
		: "rax", "rcx", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
	test_ready_sent();
}

int main(int argc, char **argv)
{
	static struct avx512_state in, out;
	test_init("fpu_avx512", argc, argv);
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw"))
		test_skip("cpu or kernel lacks avx512f/avx512bw");
	fill_random(&in, sizeof(in));
	hold_registers(&in, &out);
	report_mismatch("zmm", &in.zmm[0][0], &out.zmm[0][0], 32, 64);
	for (int i = 0; i < 8; i++)
		if (in.k[i] != out.k[i])
			fail("k%d %#llx, was %#llx", i, (unsigned long long)out.k[i], (unsigned long long)in.k[i]);
	pass();
}
