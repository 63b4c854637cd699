// X.509 adapter: the only file that touches OpenSSL's X509 API (device CA, CSRs, chain checks).
#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <climits>
#include <ctime>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/certificate_authority.h"
#include "common/crypto/openssl_error.h"
#include "common/crypto/random.h"

namespace edgefleet::crypto {
namespace {

template <auto kFree>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, Deleter<GENERAL_NAME_free>>;
using OctetPtr = std::unique_ptr<ASN1_OCTET_STRING, Deleter<ASN1_OCTET_STRING_free>>;
using Ia5Ptr = std::unique_ptr<ASN1_IA5STRING, Deleter<ASN1_IA5STRING_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using IntegerPtr = std::unique_ptr<ASN1_INTEGER, Deleter<ASN1_INTEGER_free>>;

constexpr int kMaxCommonNameLength = 64;  // ub-common-name in RFC 5280
constexpr int64_t kMaxValiditySeconds = int64_t{100} * 365 * 24 * 3600;

absl::Status SslError(absl::StatusCode code, std::string_view context) {
  return absl::Status(code, absl::StrCat(std::string(context), internal::ConsumeOpenSslErrors()));
}
absl::Status Internal(std::string_view context) {
  return SslError(absl::StatusCode::kInternal, context);
}

// Refuses encrypted PEM instead of letting OpenSSL prompt for a passphrase on the terminal.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return -1; }

absl::StatusOr<BioPtr> ReadOnlyBio(std::string_view pem) {
  if (pem.size() > INT_MAX) return absl::InvalidArgumentError("PEM too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return Internal("BIO_new_mem_buf");
  return bio;
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<X509Ptr> ParseX509(std::string_view pem, std::string_view what) {
  absl::StatusOr<BioPtr> bio = ReadOnlyBio(pem);
  if (!bio.ok()) return bio.status();
  X509Ptr cert(PEM_read_bio_X509(bio->get(), nullptr, NoPassphrase, nullptr));
  if (cert == nullptr) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("parse ", std::string(what), " PEM"));
  }
  return cert;
}

absl::StatusOr<ReqPtr> ParseCsr(std::string_view pem) {
  absl::StatusOr<BioPtr> bio = ReadOnlyBio(pem);
  if (!bio.ok()) return bio.status();
  ReqPtr req(PEM_read_bio_X509_REQ(bio->get(), nullptr, NoPassphrase, nullptr));
  if (req == nullptr) return SslError(absl::StatusCode::kInvalidArgument, "parse CSR PEM");
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr || X509_REQ_verify(req.get(), key) != 1) {
    return SslError(absl::StatusCode::kInvalidArgument, "CSR self-signature does not verify");
  }
  return req;
}

absl::StatusOr<PkeyPtr> ParsePrivateKey(std::string_view pem) {
  absl::StatusOr<BioPtr> bio = ReadOnlyBio(pem);
  if (!bio.ok()) return bio.status();
  PkeyPtr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) return SslError(absl::StatusCode::kInvalidArgument, "parse private key PEM");
  return key;
}

absl::StatusOr<std::string> CertificateToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return Internal("write certificate PEM");
  }
  return BioToString(bio.get());
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Internal("write private key PEM");
  }
  return BioToString(bio.get());
}

absl::StatusOr<PkeyPtr> GenerateP256Key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (key == nullptr) return Internal("generate P-256 key");
  return key;
}

absl::StatusOr<NamePtr> NameWithCommonName(std::string_view common_name) {
  if (common_name.empty() || common_name.size() > kMaxCommonNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("common name must be 1..", kMaxCommonNameLength,
                                                   " bytes, got ", common_name.size()));
  }
  NamePtr name(X509_NAME_new());
  if (name == nullptr ||
      X509_NAME_add_entry_by_NID(name.get(), NID_commonName, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("set common name '", std::string(common_name), "'"));
  }
  return name;
}

absl::StatusOr<std::string> CommonNameOf(const X509_NAME* name) {
  int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return absl::InvalidArgumentError("subject has no common name");
  const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, value);
  if (len < 0) return SslError(absl::StatusCode::kInvalidArgument, "decode common name");
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

absl::Status CheckValidity(std::chrono::seconds validity) {
  if (validity.count() <= 0 || validity.count() > kMaxValiditySeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate validity must be positive and at most 100 years, got ",
                     validity.count(), "s"));
  }
  return absl::OkStatus();
}

// Fills in everything but extensions and the signature.
absl::Status SetBasics(X509* cert, const X509_NAME* subject, const X509_NAME* issuer,
                       EVP_PKEY* public_key, int64_t now_unix, std::chrono::seconds validity) {
  if (absl::Status s = CheckValidity(validity); !s.ok()) return s;
  if (X509_set_version(cert, X509_VERSION_3) != 1) return Internal("set certificate version");

  // 128 random bits; the top bit is cleared so the DER INTEGER stays positive (RFC 5280 4.1.2.2).
  std::string serial_bytes = RandomBytes(16);
  serial_bytes[0] = static_cast<char>((serial_bytes[0] & 0x7f) | 0x40);
  BnPtr bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(serial_bytes.data()),
                     static_cast<int>(serial_bytes.size()), nullptr));
  IntegerPtr serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
  if (serial == nullptr || X509_set_serialNumber(cert, serial.get()) != 1) {
    return Internal("set certificate serial");
  }
  if (X509_set_subject_name(cert, subject) != 1 || X509_set_issuer_name(cert, issuer) != 1) {
    return Internal("set certificate names");
  }
  const time_t not_before = static_cast<time_t>(now_unix - kClockSkewAllowance.count());
  const time_t not_after = static_cast<time_t>(now_unix + validity.count());
  if (ASN1_TIME_set(X509_getm_notBefore(cert), not_before) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert), not_after) == nullptr) {
    return Internal("set certificate validity");
  }
  if (X509_set_pubkey(cert, public_key) != 1) return Internal("set certificate public key");
  return absl::OkStatus();
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx{};
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1) {
    return Internal(absl::StrCat("add extension ", OBJ_nid2sn(nid), "=", value));
  }
  return absl::OkStatus();
}

struct ExtensionSpec {
  int nid;
  const char* value;
};

absl::Status AddExtensions(X509* cert, X509* issuer, std::initializer_list<ExtensionSpec> specs) {
  for (const ExtensionSpec& spec : specs) {
    if (absl::Status s = AddExtension(cert, issuer, spec.nid, spec.value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status SignCertificate(X509* cert, EVP_PKEY* issuer_key) {
  if (X509_sign(cert, issuer_key, EVP_sha256()) <= 0) return Internal("sign certificate");
  return absl::OkStatus();
}

// An end-entity certificate signed by `issuer`: not a CA, for digital signatures, with the given
// extended key usage ("clientAuth" for devices, "serverAuth" for servers), key identifiers, and
// the subject alternative names when there are any.
absl::StatusOr<X509Ptr> IssueLeaf(X509* issuer, EVP_PKEY* issuer_key, const X509_NAME* subject,
                                  EVP_PKEY* public_key, const char* extended_key_usage,
                                  GENERAL_NAMES* subject_alt_names, int64_t now_unix,
                                  std::chrono::seconds validity) {
  X509Ptr cert(X509_new());
  if (cert == nullptr) return Internal("allocate certificate");
  if (absl::Status s = SetBasics(cert.get(), subject, X509_get_subject_name(issuer), public_key,
                                 now_unix, validity);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = AddExtensions(cert.get(), issuer,
                                     {{NID_basic_constraints, "critical,CA:FALSE"},
                                      {NID_key_usage, "critical,digitalSignature"},
                                      {NID_ext_key_usage, extended_key_usage},
                                      {NID_subject_key_identifier, "hash"},
                                      {NID_authority_key_identifier, "keyid:always"}});
      !s.ok()) {
    return s;
  }
  if (subject_alt_names != nullptr && sk_GENERAL_NAME_num(subject_alt_names) > 0 &&
      X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, subject_alt_names, 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return Internal("add subjectAltName");
  }
  if (absl::Status s = SignCertificate(cert.get(), issuer_key); !s.ok()) return s;
  return cert;
}

bool IsValidDnsName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '*') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<GeneralNamesPtr> SubjectAltNames(const std::vector<std::string>& hosts) {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (names == nullptr) return Internal("allocate subjectAltName");
  for (const std::string& raw_host : hosts) {
    std::string_view host = raw_host;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);  // "[::1]" as written in URLs
    }
    std::string host_str(host);
    unsigned char ip[16];
    int ip_len = 0;
    if (inet_pton(AF_INET, host_str.c_str(), ip) == 1) {
      ip_len = 4;
    } else if (inet_pton(AF_INET6, host_str.c_str(), ip) == 1) {
      ip_len = 16;
    }
    GeneralNamePtr name(GENERAL_NAME_new());
    if (name == nullptr) return Internal("allocate GENERAL_NAME");
    if (ip_len > 0) {
      OctetPtr octets(ASN1_OCTET_STRING_new());
      if (octets == nullptr || ASN1_OCTET_STRING_set(octets.get(), ip, ip_len) != 1) {
        return Internal("encode IP SAN");
      }
      GENERAL_NAME_set0_value(name.get(), GEN_IPADD, octets.release());
    } else {
      if (!IsValidDnsName(host)) {
        return absl::InvalidArgumentError(
            absl::StrCat("host '", raw_host, "' is neither an IP address nor a DNS name"));
      }
      Ia5Ptr dns(ASN1_IA5STRING_new());
      if (dns == nullptr ||
          ASN1_STRING_set(dns.get(), host.data(), static_cast<int>(host.size())) != 1) {
        return Internal("encode DNS SAN");
      }
      GENERAL_NAME_set0_value(name.get(), GEN_DNS, dns.release());
    }
    if (sk_GENERAL_NAME_push(names.get(), name.get()) <= 0) return Internal("append SAN");
    name.release();  // owned by `names` now
  }
  return names;
}

int64_t AsnTimeToUnix(const ASN1_TIME* time) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(time, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::string IpToString(const ASN1_OCTET_STRING* octets) {
  char buf[INET6_ADDRSTRLEN] = {};
  const unsigned char* data = ASN1_STRING_get0_data(octets);
  int len = ASN1_STRING_length(octets);
  if (len == 4 && inet_ntop(AF_INET, data, buf, sizeof(buf)) != nullptr) return buf;
  if (len == 16 && inet_ntop(AF_INET6, data, buf, sizeof(buf)) != nullptr) return buf;
  return absl::StrCat("<invalid ", len, "-byte IP>");
}

}  // namespace

absl::StatusOr<KeyAndCertificate> CreateSelfSignedCa(std::string_view common_name,
                                                     std::chrono::seconds validity) {
  return CreateSelfSignedCa(common_name, validity, static_cast<int64_t>(std::time(nullptr)));
}

absl::StatusOr<KeyAndCertificate> CreateSelfSignedCa(std::string_view common_name,
                                                     std::chrono::seconds validity,
                                                     int64_t now_unix) {
  absl::StatusOr<NamePtr> name = NameWithCommonName(common_name);
  if (!name.ok()) return name.status();
  absl::StatusOr<PkeyPtr> key = GenerateP256Key();
  if (!key.ok()) return key.status();
  X509Ptr cert(X509_new());
  if (cert == nullptr) return Internal("allocate certificate");
  if (absl::Status s =
          SetBasics(cert.get(), name->get(), name->get(), key->get(), now_unix, validity);
      !s.ok()) {
    return s;
  }
  // The subject key id must exist before the authority key id, which copies it.
  if (absl::Status s =
          AddExtensions(cert.get(), cert.get(),
                        {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                         {NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"},
                         {NID_subject_key_identifier, "hash"},
                         {NID_authority_key_identifier, "keyid:always"}});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = SignCertificate(cert.get(), key->get()); !s.ok()) return s;
  KeyAndCertificate out;
  absl::StatusOr<std::string> key_pem = PrivateKeyToPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> cert_pem = CertificateToPem(cert.get());
  if (!cert_pem.ok()) return cert_pem.status();
  out.private_key_pem = *std::move(key_pem);
  out.certificate_pem = *std::move(cert_pem);
  return out;
}

absl::StatusOr<KeyAndCsr> GenerateKeyAndCsr(std::string_view common_name) {
  absl::StatusOr<NamePtr> name = NameWithCommonName(common_name);
  if (!name.ok()) return name.status();
  absl::StatusOr<PkeyPtr> key = GenerateP256Key();
  if (!key.ok()) return key.status();
  ReqPtr req(X509_REQ_new());
  if (req == nullptr || X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(req.get(), name->get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key->get()) != 1 ||
      X509_REQ_sign(req.get(), key->get(), EVP_sha256()) <= 0) {
    return Internal("build CSR");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return Internal("write CSR PEM");
  }
  KeyAndCsr out;
  out.csr_pem = BioToString(bio.get());
  absl::StatusOr<std::string> key_pem = PrivateKeyToPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  out.private_key_pem = *std::move(key_pem);
  return out;
}

absl::StatusOr<std::string> CsrCommonName(std::string_view csr_pem) {
  absl::StatusOr<ReqPtr> req = ParseCsr(csr_pem);
  if (!req.ok()) return req.status();
  return CommonNameOf(X509_REQ_get_subject_name(req->get()));
}

absl::StatusOr<CertificateInfo> ParseCertificate(std::string_view certificate_pem) {
  absl::StatusOr<X509Ptr> cert = ParseX509(certificate_pem, "certificate");
  if (!cert.ok()) return cert.status();
  CertificateInfo info;
  // A certificate without a CN (SAN-only) is legal; report it as empty.
  if (absl::StatusOr<std::string> cn = CommonNameOf(X509_get_subject_name(cert->get())); cn.ok()) {
    info.common_name = *std::move(cn);
  }
  BnPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert->get()), nullptr));
  if (serial == nullptr) return Internal("decode certificate serial");
  char* hex = BN_bn2hex(serial.get());
  if (hex == nullptr) return Internal("format certificate serial");
  info.serial_hex = absl::AsciiStrToLower(hex);
  OPENSSL_free(hex);
  info.not_before_unix = AsnTimeToUnix(X509_get0_notBefore(cert->get()));
  info.not_after_unix = AsnTimeToUnix(X509_get0_notAfter(cert->get()));
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert->get(), NID_subject_alt_name, nullptr, nullptr)));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
      if (name->type == GEN_DNS) {
        const ASN1_IA5STRING* dns = name->d.dNSName;
        info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                                    static_cast<size_t>(ASN1_STRING_length(dns)));
      } else if (name->type == GEN_IPADD) {
        info.ip_addresses.push_back(IpToString(name->d.iPAddress));
      }
    }
  }
  info.is_ca = (X509_get_extension_flags(cert->get()) & EXFLAG_CA) != 0;
  ERR_clear_error();
  return info;
}

namespace {

absl::Status VerifyIssuedByImpl(std::string_view certificate_pem,
                                std::string_view ca_certificate_pem,
                                std::optional<int64_t> now_unix) {
  absl::StatusOr<X509Ptr> cert = ParseX509(certificate_pem, "certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<X509Ptr> ca = ParseX509(ca_certificate_pem, "CA certificate");
  if (!ca.ok()) return ca.status();
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (store == nullptr || ctx == nullptr || X509_STORE_add_cert(store.get(), ca->get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr) != 1) {
    return Internal("set up certificate verification");
  }
  if (now_unix.has_value()) {
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()),
                               static_cast<time_t>(*now_unix));
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    int error = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::PermissionDeniedError(absl::StrCat("certificate not issued by trusted CA: ",
                                                    X509_verify_cert_error_string(error)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status VerifyIssuedBy(std::string_view certificate_pem, std::string_view ca_certificate_pem) {
  return VerifyIssuedByImpl(certificate_pem, ca_certificate_pem, std::nullopt);
}

absl::Status VerifyIssuedBy(std::string_view certificate_pem, std::string_view ca_certificate_pem,
                            int64_t now_unix) {
  return VerifyIssuedByImpl(certificate_pem, ca_certificate_pem, now_unix);
}

struct CertificateAuthority::Impl {
  X509Ptr certificate;
  PkeyPtr private_key;
  std::string certificate_pem;
};

CertificateAuthority::CertificateAuthority(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CertificateAuthority::~CertificateAuthority() = default;

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::Load(
    std::string_view ca_certificate_pem, std::string_view ca_private_key_pem) {
  auto impl = std::make_unique<Impl>();
  absl::StatusOr<X509Ptr> cert = ParseX509(ca_certificate_pem, "CA certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<PkeyPtr> key = ParsePrivateKey(ca_private_key_pem);
  if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat("CA ", key.status().message()));
  if ((X509_get_extension_flags(cert->get()) & EXFLAG_CA) == 0) {
    return absl::InvalidArgumentError("CA certificate lacks basicConstraints CA:TRUE");
  }
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "CA private key does not match CA certificate");
  }
  impl->certificate = *std::move(cert);
  impl->private_key = *std::move(key);
  impl->certificate_pem = std::string(ca_certificate_pem);
  return std::unique_ptr<CertificateAuthority>(new CertificateAuthority(std::move(impl)));
}

const std::string& CertificateAuthority::CertificatePem() const { return impl_->certificate_pem; }

absl::StatusOr<std::string> CertificateAuthority::SignClientCsr(
    std::string_view csr_pem, std::string_view expected_common_name, std::chrono::seconds validity,
    int64_t now_unix) const {
  absl::StatusOr<ReqPtr> req = ParseCsr(csr_pem);
  if (!req.ok()) return req.status();
  absl::StatusOr<std::string> cn = CommonNameOf(X509_REQ_get_subject_name(req->get()));
  if (!cn.ok()) return absl::InvalidArgumentError(absl::StrCat("CSR ", cn.status().message()));
  if (*cn != expected_common_name) {
    return absl::InvalidArgumentError(absl::StrCat("CSR common name '", *cn,
                                                   "' does not match expected '",
                                                   std::string(expected_common_name), "'"));
  }
  EVP_PKEY* public_key = X509_REQ_get0_pubkey(req->get());
  if (EVP_PKEY_get_base_id(public_key) != EVP_PKEY_EC) {
    return absl::InvalidArgumentError("CSR key must be an EC (P-256) key");
  }
  // The subject is rebuilt from the checked CN alone: nothing else in the CSR is trusted.
  absl::StatusOr<NamePtr> subject = NameWithCommonName(*cn);
  if (!subject.ok()) return subject.status();
  absl::StatusOr<X509Ptr> cert =
      IssueLeaf(impl_->certificate.get(), impl_->private_key.get(), subject->get(), public_key,
                "clientAuth", /*subject_alt_names=*/nullptr, now_unix, validity);
  if (!cert.ok()) return cert.status();
  return CertificateToPem(cert->get());
}

absl::StatusOr<KeyAndCertificate> CertificateAuthority::IssueServerCertificate(
    std::string_view common_name, const std::vector<std::string>& hosts,
    std::chrono::seconds validity, int64_t now_unix) const {
  absl::StatusOr<NamePtr> subject = NameWithCommonName(common_name);
  if (!subject.ok()) return subject.status();
  absl::StatusOr<GeneralNamesPtr> sans = SubjectAltNames(hosts);
  if (!sans.ok()) return sans.status();
  absl::StatusOr<PkeyPtr> key = GenerateP256Key();
  if (!key.ok()) return key.status();
  absl::StatusOr<X509Ptr> cert =
      IssueLeaf(impl_->certificate.get(), impl_->private_key.get(), subject->get(), key->get(),
                "serverAuth", sans->get(), now_unix, validity);
  if (!cert.ok()) return cert.status();
  KeyAndCertificate out;
  absl::StatusOr<std::string> key_pem = PrivateKeyToPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> cert_pem = CertificateToPem(cert->get());
  if (!cert_pem.ok()) return cert_pem.status();
  out.private_key_pem = *std::move(key_pem);
  out.certificate_pem = *std::move(cert_pem);
  return out;
}

}  // namespace edgefleet::crypto
