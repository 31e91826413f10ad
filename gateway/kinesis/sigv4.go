package kinesis

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/riffle-streams/riffle/gateway"
)

// Signature Version 4 (docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html),
// verified the way Kinesis does for the Authorization-header form every SDK
// sends. Without credentials (Options.Credentials empty) a request must
// still carry a well-formed signature, which is not checked against any
// secret: the development default of the emulators. With credentials every
// request must be signed by one of them, for service "kinesis" and the
// configured region, within MaxClockSkew of this node's clock, over the
// body it carries.

// Exceptions of authentication, as AWS names them.
const (
	MissingAuthenticationToken = "MissingAuthenticationTokenException"
	IncompleteSignature        = "IncompleteSignatureException"
	InvalidSignature           = "InvalidSignatureException"
	UnrecognizedClient         = "UnrecognizedClientException"
)

// MaxClockSkew is how far a request's X-Amz-Date may be from this node's
// clock.
const MaxClockSkew = 5 * time.Minute

const (
	signingAlgorithm = "AWS4-HMAC-SHA256"
	signingService   = "kinesis"
	amzDateFormat    = "20060102T150405Z"
)

// requiredSigned are the headers a signature must cover: without them a
// signature could be replayed onto another operation or endpoint.
var requiredSigned = []string{"host", "x-amz-date", "x-amz-target"}

// Credentials are the access keys requests may be signed with.
type Credentials map[string]string // access key id -> secret access key

// LoadCredentials reads an AWS shared-credentials file: [profile] sections
// with aws_access_key_id and aws_secret_access_key; every profile is a key.
func LoadCredentials(path string) (Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	creds := Credentials{}
	type profile struct{ name, id, secret string }
	var cur *profile
	var profiles []*profile
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			cur = &profile{name: strings.TrimSpace(line[1 : len(line)-1])}
			profiles = append(profiles, cur)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || cur == nil {
			return nil, fmt.Errorf("%s:%d: expected [profile] or key = value", path, n)
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			cur.id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			cur.secret = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, p := range profiles {
		if p.id == "" || p.secret == "" {
			return nil, fmt.Errorf("%s: profile [%s] needs aws_access_key_id and aws_secret_access_key", path, p.name)
		}
		if _, dup := creds[p.id]; dup {
			return nil, fmt.Errorf("%s: access key id %s appears twice", path, p.id)
		}
		creds[p.id] = p.secret
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("%s: no credentials", path)
	}
	return creds, nil
}

func authError(exception, format string, args ...any) *gateway.Error {
	return &gateway.Error{Exception: exception, Message: fmt.Sprintf(format, args...), Outcome: gateway.NotApplied}
}

// signature is a parsed Authorization header.
type signature struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

func parseAuthorization(h string) (signature, error) {
	var s signature
	if h == "" {
		return s, authError(MissingAuthenticationToken, "the request is not signed: an Authorization header with a Signature Version 4 signature is required")
	}
	alg, rest, _ := strings.Cut(h, " ")
	if alg != signingAlgorithm {
		return s, authError(IncompleteSignature, "unsupported signing algorithm %q; use %s", alg, signingAlgorithm)
	}
	var credential, signed string
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			s.signature = v
		}
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[0] == "" || scope[4] != "aws4_request" {
		return s, authError(IncompleteSignature, "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request, got %q", credential)
	}
	s.accessKey, s.date, s.region, s.service = scope[0], scope[1], scope[2], scope[3]
	if _, err := time.Parse("20060102", s.date); err != nil {
		return s, authError(IncompleteSignature, "the credential scope's date %q is not YYYYMMDD", s.date)
	}
	if s.service != signingService {
		return s, authError(InvalidSignature, "the credential scope names service %q; this endpoint is %q", s.service, signingService)
	}
	if signed == "" {
		return s, authError(IncompleteSignature, "SignedHeaders is missing")
	}
	s.signedHeaders = strings.Split(signed, ";")
	if !sort.StringsAreSorted(s.signedHeaders) {
		return s, authError(IncompleteSignature, "SignedHeaders must be sorted and lower case")
	}
	for _, need := range requiredSigned {
		if _, ok := sort.Find(len(s.signedHeaders), func(i int) int { return strings.Compare(need, s.signedHeaders[i]) }); !ok {
			return s, authError(IncompleteSignature, "the signature must cover the %s header", need)
		}
	}
	if b, err := hex.DecodeString(s.signature); err != nil || len(b) != sha256.Size {
		return s, authError(IncompleteSignature, "Signature must be 64 hex digits")
	}
	return s, nil
}

// verifier checks the signature of each request.
type verifier struct {
	creds  Credentials
	region string
	now    func() time.Time
}

// verify checks r's signature over body. Without credentials it checks only
// that the request is signed and the signature well formed.
func (v *verifier) verify(r *http.Request, body []byte) error {
	sig, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return authError(IncompleteSignature, "X-Amz-Date %q is not YYYYMMDD'T'HHMMSS'Z'", amzDate)
	}
	if t.Format("20060102") != sig.date {
		return authError(InvalidSignature, "the credential scope's date %s is not X-Amz-Date's %s", sig.date, amzDate)
	}
	if len(v.creds) == 0 {
		return nil
	}
	secret, ok := v.creds[sig.accessKey]
	if !ok {
		return authError(UnrecognizedClient, "the access key id %s is not one this cluster knows", sig.accessKey)
	}
	if skew := v.now().Sub(t); skew > MaxClockSkew || skew < -MaxClockSkew {
		return authError(InvalidSignature, "Signature expired: %s is more than %v from this node's time %s", amzDate, MaxClockSkew, v.now().UTC().Format(amzDateFormat))
	}
	if sig.region != v.region {
		return authError(InvalidSignature, "the credential scope names region %q; this cluster is %q", sig.region, v.region)
	}
	payload := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(payload[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payloadHash {
		return authError(InvalidSignature, "X-Amz-Content-Sha256 is not the SHA-256 of the body")
	}
	canonical := strings.Join([]string{r.Method, canonicalPath(r.URL.EscapedPath()), canonicalQuery(r),
		canonicalHeaders(r, sig.signedHeaders), strings.Join(sig.signedHeaders, ";"), payloadHash}, "\n")
	crHash := sha256.Sum256([]byte(canonical))
	scope := strings.Join([]string{sig.date, sig.region, sig.service, "aws4_request"}, "/")
	toSign := strings.Join([]string{signingAlgorithm, amzDate, scope, hex.EncodeToString(crHash[:])}, "\n")
	key := signingKey(secret, sig.date, sig.region, sig.service)
	want := hmacSHA256(key, []byte(toSign))
	got, _ := hex.DecodeString(sig.signature)
	if !hmac.Equal(want, got) {
		return authError(InvalidSignature, "the request signature we calculated does not match the signature you provided; check the secret access key and the signing method")
	}
	return nil
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(date))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte("aws4_request"))
}

// canonicalPath is the URI-encoded path; "/" for every Kinesis call.
func canonicalPath(escaped string) string {
	if escaped == "" {
		return "/"
	}
	return escaped
}

// canonicalQuery sorts the query by name then value, each URI-encoded.
func canonicalQuery(r *http.Request) string {
	q := r.URL.Query()
	var pairs []string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, uriEncode(k)+"="+uriEncode(v))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// canonicalHeaders lists each signed header as name:value, values trimmed
// with inner runs of spaces collapsed and repeated headers joined by ",".
func canonicalHeaders(r *http.Request, names []string) string {
	var b strings.Builder
	for _, name := range names {
		var values []string
		switch name {
		case "host":
			values = []string{r.Host}
		case "content-length":
			values = r.Header.Values(name)
			if len(values) == 0 {
				values = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		default:
			values = r.Header.Values(name)
		}
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range values {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.Join(strings.Fields(v), " "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
