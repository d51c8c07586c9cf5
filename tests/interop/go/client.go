// Interoperability proof: a Go client whose stubs protoc-gen-go and protoc-gen-go-grpc generated ahead of time
// from proto/sesame/api/v1/*.proto works against a real `sesame serve` (grpc-go's HTTP/2 transport, not the
// C core that Python's and Node's clients share with the server). It enrols a user, reads it back (masked
// phone), starts a credit-transfer challenge (an int64 amount above 2^31), reads the code from the console SMS
// file, sees every verification outcome (changed amount, wrong code, right code, replay), checks the proof's
// ES256 signature against GetProofKeys' JWK set with Go's standard library alone, decodes the rich error of a
// bad IBAN (google.rpc.BadRequest through grpc-go's status package), reads the request id from the trailers,
// asks the standard health service, and lists the services through server reflection. Its connection pings
// every 10 s, idle or not (keepalive, as Go services behind load balancers and NATs commonly set it): with
// -idle it then holds a health Watch stream open that long with nothing else to do, and checks that the
// server let the stream and the connection live. With -ca, -cert and -key it dials over TLS (Go's crypto/tls)
// presenting its client certificate, as a bank's service calls the production port; -denied then also calls
// OverrideSecurePhone, which the test's caller policy does not grant it, and reads the refusal; -probe USER
// only tries to enrol USER and reports the status (a certificate from another CA: the handshake fails).
// Prints one JSON summary line; exits 1 on any mismatch.
//
// usage: client -target 127.0.0.1:50051 -sms-file var/sms.jsonl [-idle 35s]
//
//	[-ca ca.pem -cert client.pem -key client.key [-server-name NAME] [-denied] [-probe USER]]
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	api "sesameinterop/apiv1"
)

var (
	target     = flag.String("target", "", "host:port of sesame serve")
	smsFile    = flag.String("sms-file", "", "the console gateway's JSON-lines file")
	idle       = flag.Duration("idle", 0, "how long to hold a health Watch open on the idle, pinging connection")
	caFile     = flag.String("ca", "", "PEM file of the CA of the server's certificate (TLS when set)")
	certFile   = flag.String("cert", "", "PEM file of the client certificate")
	keyFile    = flag.String("key", "", "PEM file of the client certificate's key")
	serverName = flag.String("server-name", "", "the name to verify the server's certificate against")
	denied     = flag.Bool("denied", false, "also call OverrideSecurePhone, which the policy does not grant")
	probe      = flag.String("probe", "", "only try to enrol this user id and report the status")
)

// transport is plaintext, or TLS presenting the client certificate and trusting only -ca.
func transport() (grpc.DialOption, error) {
	if *caFile == "" {
		return grpc.WithInsecure(), nil
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", *caFile)
	}
	pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return nil, err
	}
	config := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: *serverName,
		MinVersion: tls.VersionTLS12}
	return grpc.WithTransportCredentials(credentials.NewTLS(config)), nil
}

// A common client keepalive: grpc-go's shortest ping interval, pings with no call in flight too.
var pinging = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}

type summary struct {
	Ok       bool                   `json:"ok"`
	Seen     map[string]interface{} `json:"seen"`
	Failures []string               `json:"failures"`
	Crashed  *string                `json:"crashed"`
}

var result = summary{Seen: map[string]interface{}{}, Failures: []string{}}

// expect records what was seen under name, and a failure when it is not what the API guide promises.
func expect(name string, actual, expected interface{}) {
	result.Seen[name] = actual
	if fmt.Sprint(actual) != fmt.Sprint(expected) {
		result.Failures = append(result.Failures, fmt.Sprintf("%s: got %v, want %v", name, actual, expected))
	}
}

func deadline() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

const amount = int64(2500000000) // above 2^31 on purpose: it crosses the wire as an int64

var payee = &api.Payee{Name: "Jean DUPONT", Iban: "FR76 3000 6000 0112 3456 7890 189"}

func transfer(amountMinor int64, iban string, transactionID string) *api.Operation {
	return &api.Operation{Kind: &api.Operation_CreditTransfer{CreditTransfer: &api.CreditTransfer{
		Amount:        &api.Money{Currency: "EUR", AmountMinor: amountMinor},
		Payee:         &api.Payee{Name: payee.Name, Iban: iban},
		TransactionId: transactionID,
	}}}
}

var codeInText = regexp.MustCompile(`code (\d+)`)

// readCode waits (at most 5 s) for the SMS of challengeID in the console file and returns its code.
func readCode(challengeID string) (string, error) {
	for tries := 0; tries < 50; tries++ {
		if file, err := os.Open(*smsFile); err == nil {
			scanner := bufio.NewScanner(file)
			scanner.Buffer(make([]byte, 64*1024), 1024*1024)
			for scanner.Scan() {
				var sms struct {
					ChallengeID string `json:"challenge_id"`
					Text        string `json:"text"`
				}
				if json.Unmarshal(scanner.Bytes(), &sms) == nil && sms.ChallengeID == challengeID {
					file.Close()
					if match := codeInText.FindStringSubmatch(sms.Text); match != nil {
						return match[1], nil
					}
					return "", fmt.Errorf("no code in the SMS of %s", challengeID)
				}
			}
			file.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("no SMS for %s in %s", challengeID, *smsFile)
}

func unpadded(text string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(text) }

// verifiedClaims checks a compact JWS's ES256 signature against the JWK set and returns its claims.
func verifiedClaims(proof string, jwksJSON string) (map[string]interface{}, error) {
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("a compact JWS has 3 parts, this one %d", len(parts))
	}
	rawHeader, err := unpadded(parts[0])
	if err != nil {
		return nil, err
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(rawHeader, &header); err != nil {
		return nil, err
	}
	if header.Alg != "ES256" {
		return nil, fmt.Errorf("alg %q", header.Alg)
	}
	var jwks struct {
		Keys []struct{ Kty, Crv, X, Y, Kid, Alg string } `json:"keys"`
	}
	if err := json.Unmarshal([]byte(jwksJSON), &jwks); err != nil {
		return nil, err
	}
	var key *ecdsa.PublicKey
	for _, jwk := range jwks.Keys {
		if jwk.Kid != header.Kid || jwk.Kty != "EC" || jwk.Crv != "P-256" {
			continue
		}
		x, errX := unpadded(jwk.X)
		y, errY := unpadded(jwk.Y)
		if errX != nil || errY != nil {
			return nil, fmt.Errorf("key %s: bad coordinates", jwk.Kid)
		}
		key = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if !key.Curve.IsOnCurve(key.X, key.Y) {
			return nil, fmt.Errorf("key %s is not on P-256", jwk.Kid)
		}
	}
	if key == nil {
		return nil, fmt.Errorf("no P-256 key %q in the JWK set", header.Kid)
	}
	signature, err := unpadded(parts[2])
	if err != nil || len(signature) != 64 {
		return nil, fmt.Errorf("an ES256 signature is r || s, 64 bytes")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(signature[:32]), new(big.Int).SetBytes(signature[32:])
	if !ecdsa.Verify(key, digest[:], r, s) {
		return nil, fmt.Errorf("the signature does not verify")
	}
	rawClaims, err := unpadded(parts[1])
	if err != nil {
		return nil, err
	}
	claims := map[string]interface{}{}
	if err := json.Unmarshal(rawClaims, &claims); err != nil {
		return nil, err
	}
	claims["typ"] = header.Typ
	return claims, nil
}

// tampered is the proof with its claims changed (the amount of attempts) and its signature kept.
func tampered(proof string) string {
	parts := strings.Split(proof, ".")
	rawClaims, _ := unpadded(parts[1])
	changed := strings.Replace(string(rawClaims), `"attempts":2`, `"attempts":1`, 1)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(changed)) + "." + parts[2]
}

func run() error {
	secure, err := transport()
	if err != nil {
		return err
	}
	options := []grpc.DialOption{secure, grpc.WithKeepaliveParams(pinging)}
	if *probe == "" { // a probe's refused handshake is its call's status, not a dial that blocks until timeout
		options = append(options, grpc.WithBlock(), grpc.WithTimeout(10*time.Second))
	}
	conn, err := grpc.Dial(*target, options...)
	if err != nil {
		return err
	}
	defer conn.Close()
	enrol := api.NewEnrollmentServiceClient(conn)
	if *probe != "" {
		ctx, cancel := deadline()
		defer cancel()
		_, err := enrol.EnrollUser(ctx, &api.EnrollUserRequest{UserId: *probe, ClientId: "go-client",
			SecurePhone: "+33612345678"})
		result.Seen["probe_code"] = codeName(status.Code(err))
		return nil
	}
	auth := api.NewAuthenticationServiceClient(conn)
	userID := fmt.Sprintf("go-%d-%d", os.Getpid(), time.Now().UnixNano())
	transactionID := "tx-" + userID
	requestContext := &api.RequestContext{Ip: "203.0.113.8", DeviceId: "go-interop", SessionId: userID}

	ctx, cancel := deadline()
	defer cancel()
	var server peer.Peer
	enrolled, err := enrol.EnrollUser(ctx, &api.EnrollUserRequest{UserId: userID, ClientId: "go-client",
		SecurePhone: "+33612345678"}, grpc.Peer(&server))
	if err != nil {
		return fmt.Errorf("EnrollUser: %w", err)
	}
	if negotiated, ok := server.AuthInfo.(credentials.TLSInfo); ok {
		result.Seen["tls_version"] = map[uint16]string{tls.VersionTLS12: "TLS 1.2", tls.VersionTLS13: "TLS 1.3"}[negotiated.State.Version]
		result.Seen["alpn"] = negotiated.State.NegotiatedProtocol
	}
	expect("enrolled_status", enrolled.User.Status.String(), "USER_STATUS_ACTIVE")
	user, err := enrol.GetUser(ctx, &api.GetUserRequest{UserId: userID})
	if err != nil {
		return fmt.Errorf("GetUser: %w", err)
	}
	expect("masked_phone", user.User.MaskedPhone, "+33*******78")

	start := func() (*api.StartChallengeResponse, metadata.MD, error) {
		var trailer metadata.MD
		started, err := auth.StartChallenge(ctx, &api.StartChallengeRequest{UserId: userID,
			Operation: transfer(amount, payee.Iban, transactionID), Context: requestContext}, grpc.Trailer(&trailer))
		return started, trailer, err
	}
	verify := func(challengeID, code string, amountMinor int64) (*api.VerifyChallengeResponse, error) {
		return auth.VerifyChallenge(ctx, &api.VerifyChallengeRequest{ChallengeId: challengeID, Code: code,
			Operation: transfer(amountMinor, payee.Iban, transactionID), Context: requestContext})
	}

	// A changed amount voids the code (dynamic linking).
	first, trailer, err := start()
	if err != nil {
		return fmt.Errorf("StartChallenge: %w", err)
	}
	expect("delivery_state", first.DeliveryState.String(), "DELIVERY_STATE_QUEUED")
	requestIDs := trailer.Get("x-request-id")
	expect("request_id_in_trailers", len(requestIDs) == 1 && len(requestIDs[0]) > 0, true)
	described, err := auth.GetChallenge(ctx, &api.GetChallengeRequest{ChallengeId: first.ChallengeId})
	if err != nil {
		return fmt.Errorf("GetChallenge: %w", err)
	}
	expect("amount_minor", described.Challenge.Operation.GetCreditTransfer().GetAmount().GetAmountMinor(), amount)
	firstCode, err := readCode(first.ChallengeId)
	if err != nil {
		return err
	}
	mismatch, err := verify(first.ChallengeId, firstCode, amount+1)
	if err != nil {
		return fmt.Errorf("VerifyChallenge: %w", err)
	}
	expect("changed_amount", mismatch.Result.String(), "VERIFY_RESULT_OPERATION_MISMATCH")

	// A new challenge: wrong code, right code (its proof checked), replay.
	second, _, err := start()
	if err != nil {
		return fmt.Errorf("StartChallenge: %w", err)
	}
	code, err := readCode(second.ChallengeId)
	if err != nil {
		return err
	}
	wrongCode := fmt.Sprintf("%d", (int(code[0]-'0')+1)%10) + code[1:]
	wrong, err := verify(second.ChallengeId, wrongCode, amount)
	if err != nil {
		return fmt.Errorf("VerifyChallenge: %w", err)
	}
	expect("wrong_code", wrong.Result.String(), "VERIFY_RESULT_WRONG_CODE")
	expect("attempts_left", wrong.AttemptsLeft, 2)
	right, err := verify(second.ChallengeId, code, amount)
	if err != nil {
		return fmt.Errorf("VerifyChallenge: %w", err)
	}
	expect("right_code", right.Result.String(), "VERIFY_RESULT_VERIFIED")
	keys, err := auth.GetProofKeys(ctx, &api.GetProofKeysRequest{})
	if err != nil {
		return fmt.Errorf("GetProofKeys: %w", err)
	}
	claims, err := verifiedClaims(right.Proof, keys.JwksJson)
	if err != nil {
		expect("proof_verifies", err.Error(), "verified")
	} else {
		expect("proof_verifies", "verified", "verified")
		expect("proof_sub", claims["sub"], userID)
		expect("proof_challenge_id", claims["challenge_id"], second.ChallengeId)
		expect("proof_op", claims["op"], "credit_transfer")
		expect("proof_attempts", claims["attempts"], 2)
		expect("proof_typ", claims["typ"], "sesame-proof+jwt")
	}
	_, err = verifiedClaims(tampered(right.Proof), keys.JwksJson)
	expect("tampered_proof_refused", err != nil, true)
	fetched, err := auth.GetProof(ctx, &api.GetProofRequest{ChallengeId: second.ChallengeId})
	if err != nil {
		return fmt.Errorf("GetProof: %w", err)
	}
	_, err = verifiedClaims(fetched.Proof, keys.JwksJson)
	expect("get_proof_verifies", err == nil, true)
	replay, err := verify(second.ChallengeId, code, amount)
	if err != nil {
		return fmt.Errorf("VerifyChallenge: %w", err)
	}
	expect("replay", replay.Result.String(), "VERIFY_RESULT_ALREADY_USED")

	// A bad IBAN checksum (77 instead of 76): INVALID_ARGUMENT, with a BadRequest naming the field, and the
	// request id beside the rich status in the trailers.
	var refusedTrailer metadata.MD
	_, err = auth.StartChallenge(ctx, &api.StartChallengeRequest{UserId: userID,
		Operation: transfer(amount, "FR77 3000 6000 0112 3456 7890 189", transactionID)}, grpc.Trailer(&refusedTrailer))
	refused, _ := status.FromError(err)
	expect("bad_iban_code", int(refused.Code()), int(codes.InvalidArgument))
	fields := []string{}
	for _, detail := range refused.Details() {
		if badRequest, ok := detail.(*errdetails.BadRequest); ok {
			for _, violation := range badRequest.FieldViolations {
				fields = append(fields, violation.Field)
			}
		}
	}
	expect("bad_iban_fields", strings.Join(fields, ","), "operation.credit_transfer.payee.iban")
	expect("refusal_request_id_in_trailers", len(refusedTrailer.Get("x-request-id")) == 1, true)

	// The standard health service, and the services listed through reflection.
	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{
		Service: "sesame.api.v1.AuthenticationService"})
	if err != nil {
		return fmt.Errorf("Health.Check: %w", err)
	}
	expect("health", health.Status.String(), "SERVING")
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return fmt.Errorf("ServerReflectionInfo: %w", err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil {
		return fmt.Errorf("reflection send: %w", err)
	}
	listed, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("reflection receive: %w", err)
	}
	names := []string{}
	for _, service := range listed.GetListServicesResponse().GetService() {
		if strings.HasPrefix(service.Name, "sesame.") {
			names = append(names, service.Name)
		}
	}
	sort.Strings(names)
	expect("reflected_services", strings.Join(names, ","),
		"sesame.api.v1.AuthenticationService,sesame.api.v1.EnrollmentService,sesame.api.v1.EvidenceService")
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if *denied {
		deniedOverride(ctx, enrol, userID)
	}
	if *idle > 0 {
		return idleWatch(conn)
	}
	return nil
}

// codeName is the status code's name as the gRPC specification and the other languages spell it
// (PERMISSION_DENIED; grpc-go's String() says PermissionDenied).
func codeName(code codes.Code) string {
	var name strings.Builder
	previous := ' '
	for _, letter := range code.String() {
		if unicode.IsUpper(letter) && unicode.IsLower(previous) {
			name.WriteByte('_')
		}
		name.WriteRune(unicode.ToUpper(letter))
		previous = letter
	}
	return name.String()
}

// deniedOverride moves the user's number without a code, which the policy does not grant this caller: the
// refusal is PERMISSION_DENIED with an ErrorInfo naming the method and the caller, and the number stays.
func deniedOverride(ctx context.Context, enrol api.EnrollmentServiceClient, userID string) {
	var trailer metadata.MD
	_, err := enrol.OverrideSecurePhone(ctx, &api.OverrideSecurePhoneRequest{UserId: userID,
		NewPhone: "+33698765432", Operator: "go-interop", Reason: "lost phone", RequestId: "r-" + userID,
		Actor: "ops-1"}, grpc.Trailer(&trailer))
	refused, _ := status.FromError(err)
	result.Seen["denied_code"] = codeName(refused.Code())
	for _, detail := range refused.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			result.Seen["denied_reason"] = info.Reason
			result.Seen["denied_domain"] = info.Domain
			result.Seen["denied_method"] = info.Metadata["method"]
			result.Seen["denied_caller"] = info.Metadata["caller"]
		}
	}
	result.Seen["denied_request_id_in_trailers"] = len(trailer.Get("x-request-id")) == 1
	user, err := enrol.GetUser(ctx, &api.GetUserRequest{UserId: userID})
	if err != nil {
		result.Seen["denied_masked_phone_after"] = codeName(status.Code(err))
		return
	}
	result.Seen["denied_masked_phone_after"] = user.User.MaskedPhone
}

// idleWatch holds a health Watch open for -idle while the connection only pings, then calls on it again.
func idleWatch(conn *grpc.ClientConn) error {
	health := healthpb.NewHealthClient(conn)
	watching, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := health.Watch(watching, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("Health.Watch: %w", err)
	}
	if _, err := watch.Recv(); err != nil {
		return fmt.Errorf("Health.Watch first answer: %w", err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := watch.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		expect("watch_while_idle", status.Code(err).String()+": "+status.Convert(err).Message(), "alive")
	case <-time.After(*idle):
		expect("watch_while_idle", "alive", "alive")
	}
	ctx, done := deadline()
	defer done()
	after, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		expect("call_after_idle", status.Code(err).String(), "SERVING")
		return nil
	}
	expect("call_after_idle", after.Status.String(), "SERVING")
	return nil
}

func main() {
	flag.Parse()
	if *target == "" || *smsFile == "" {
		fmt.Fprintln(os.Stderr, "usage: client -target HOST:PORT -sms-file FILE")
		os.Exit(2)
	}
	if err := run(); err != nil {
		crashed := err.Error()
		result.Crashed = &crashed
	}
	result.Ok = result.Crashed == nil && len(result.Failures) == 0
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
	if !result.Ok {
		os.Exit(1)
	}
}
