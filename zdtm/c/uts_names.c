/* uts_names: the host and domain name of the test's own UTS namespace (the mntns
 * flavor names the host zdtm-...; the test sets a domain name of its own) are the same
 * after the restore. Refuses to run with the host's names. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	test_init("uts_names", argc, argv);
	char host[256] = "", domain[256] = "";
	gethostname(host, sizeof host);
	if (strncmp(host, "zdtm-", 5))
		test_skip("not in a UTS namespace of its own (the host name is not zdtm-...)");
	char want[64];
	snprintf(want, sizeof want, "zdtm-domain-%llx", (unsigned long long)(test_rand64() & 0xffffff));
	if (setdomainname(want, strlen(want)))
		fail("setdomainname: %m");
	test_ready();
	test_waitsig();
	char host_after[256] = "";
	gethostname(host_after, sizeof host_after);
	getdomainname(domain, sizeof domain);
	if (strcmp(host, host_after))
		fail("host name %s, was %s", host_after, host);
	if (strcmp(domain, want))
		fail("domain name %s, was %s", domain, want);
	pass();
}
