// Interoperability proof: a Java client whose stubs protoc and grpc-java's plugin generated ahead of time from
// proto/sesame/api/v1/*.proto works against a real `sesame serve` over grpc-java's Netty transport (a third
// HTTP/2 implementation, after gRPC's C core and grpc-go). It enrols a user, reads it back (masked phone),
// starts a credit-transfer challenge (an int64 amount above 2^31), reads the code from the console SMS file,
// sees every verification outcome (changed amount, wrong code, right code, replay), checks the proof's ES256
// signature against GetProofKeys' JWK set with java.security alone, decodes the rich error of a bad IBAN
// (google.rpc.Status and BadRequest from the grpc-status-details-bin trailer) and reads the request id from
// the trailers. Its channel pings every 10 s, idle or not (grpc-java's shortest keepalive): with an idle time
// it then holds a health Watch open that long and checks that the server let the stream live. Prints one JSON
// summary line; exits 1 on any mismatch. With -ca, -cert and -key it dials over TLS (JSSE, ALPN through Netty)
// presenting its client certificate (a PKCS#8 PEM key), as a bank's service calls the production port;
// -denied true then also calls OverrideSecurePhone, which the test's caller policy does not grant it, and reads
// the refusal; -probe USER only tries to enrol USER and reports the status.
//
// usage: java -cp ... SesameClient -target 127.0.0.1:50051 -sms-file var/sms.jsonl [-idle 35]
//   [-ca ca.pem -cert client.pem -key client.key [-server-name NAME] [-denied true] [-probe USER]]

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;
import io.netty.handler.ssl.SslContext;
import io.grpc.stub.StreamObserver;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.AlgorithmParameters;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.SSLSession;
import sesame.api.v1.AuthenticationServiceGrpc;
import sesame.api.v1.AuthenticationServiceOuterClass.GetChallengeRequest;
import sesame.api.v1.AuthenticationServiceOuterClass.GetProofKeysRequest;
import sesame.api.v1.AuthenticationServiceOuterClass.GetProofRequest;
import sesame.api.v1.AuthenticationServiceOuterClass.StartChallengeRequest;
import sesame.api.v1.AuthenticationServiceOuterClass.StartChallengeResponse;
import sesame.api.v1.AuthenticationServiceOuterClass.VerifyChallengeRequest;
import sesame.api.v1.AuthenticationServiceOuterClass.VerifyChallengeResponse;
import sesame.api.v1.EnrollmentServiceGrpc;
import sesame.api.v1.EnrollmentServiceOuterClass.EnrollUserRequest;
import sesame.api.v1.EnrollmentServiceOuterClass.GetUserRequest;
import sesame.api.v1.EnrollmentServiceOuterClass.OverrideSecurePhoneRequest;
import sesame.api.v1.OperationOuterClass.CreditTransfer;
import sesame.api.v1.OperationOuterClass.Money;
import sesame.api.v1.OperationOuterClass.Operation;
import sesame.api.v1.OperationOuterClass.Payee;
import sesame.api.v1.OperationOuterClass.RequestContext;

public final class SesameClient {
  private static final long AMOUNT = 2_500_000_000L; // above 2^31 on purpose: it crosses the wire as an int64
  private static final String IBAN = "FR76 3000 6000 0112 3456 7890 189";
  private static final Pattern CODE = Pattern.compile("code (\\d+)");
  private static final Metadata.Key<String> REQUEST_ID =
      Metadata.Key.of("x-request-id", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<byte[]> DETAILS =
      Metadata.Key.of("grpc-status-details-bin", Metadata.BINARY_BYTE_MARSHALLER);

  private final Map<String, Object> seen = new LinkedHashMap<>();
  private final List<String> failures = new ArrayList<>();

  private void expect(String name, Object actual, Object expected) {
    seen.put(name, actual);
    if (!String.valueOf(actual).equals(String.valueOf(expected))) {
      failures.add(name + ": got " + actual + ", want " + expected);
    }
  }

  private static Operation transfer(long amountMinor, String iban, String transactionId) {
    return Operation.newBuilder()
        .setCreditTransfer(
            CreditTransfer.newBuilder()
                .setAmount(Money.newBuilder().setCurrency("EUR").setAmountMinor(amountMinor))
                .setPayee(Payee.newBuilder().setName("Jean DUPONT").setIban(iban))
                .setTransactionId(transactionId))
        .build();
  }

  /** The code of the SMS sent for the challenge: the digits after "code " (waits at most 5 s). */
  private static String readCode(Path smsFile, String challengeId) throws Exception {
    Gson gson = new Gson();
    for (int tries = 0; tries < 50; tries++) {
      if (Files.exists(smsFile)) {
        for (String line : Files.readAllLines(smsFile, StandardCharsets.UTF_8)) {
          if (line.isBlank()) {
            continue;
          }
          JsonObject sms = gson.fromJson(line, JsonObject.class);
          if (sms.has("challenge_id") && challengeId.equals(sms.get("challenge_id").getAsString())) {
            Matcher match = CODE.matcher(sms.get("text").getAsString());
            if (match.find()) {
              return match.group(1);
            }
            throw new IllegalStateException("no code in the SMS of " + challengeId);
          }
        }
      }
      Thread.sleep(100);
    }
    throw new IllegalStateException("no SMS for " + challengeId + " in " + smsFile);
  }

  private static byte[] unpadded(String text) {
    return Base64.getUrlDecoder().decode(text);
  }

  /** The proof's claims when its ES256 signature verifies under the JWK set's key of its kid; else throws. */
  private static JsonObject verifiedClaims(String proof, String jwksJson) throws Exception {
    String[] parts = proof.split("\\.");
    if (parts.length != 3) {
      throw new IllegalArgumentException("a compact JWS has 3 parts");
    }
    Gson gson = new Gson();
    JsonObject header = gson.fromJson(new String(unpadded(parts[0]), StandardCharsets.UTF_8), JsonObject.class);
    if (!"ES256".equals(header.get("alg").getAsString())) {
      throw new IllegalArgumentException("alg " + header.get("alg"));
    }
    String kid = header.get("kid").getAsString();
    PublicKey key = null;
    for (var element : gson.fromJson(jwksJson, JsonObject.class).getAsJsonArray("keys")) {
      JsonObject jwk = element.getAsJsonObject();
      if (kid.equals(jwk.get("kid").getAsString()) && "P-256".equals(jwk.get("crv").getAsString())) {
        AlgorithmParameters parameters = AlgorithmParameters.getInstance("EC");
        parameters.init(new ECGenParameterSpec("secp256r1"));
        ECPoint point =
            new ECPoint(
                new BigInteger(1, unpadded(jwk.get("x").getAsString())),
                new BigInteger(1, unpadded(jwk.get("y").getAsString())));
        key =
            KeyFactory.getInstance("EC")
                .generatePublic(new ECPublicKeySpec(point, parameters.getParameterSpec(ECParameterSpec.class)));
      }
    }
    if (key == null) {
      throw new IllegalArgumentException("no P-256 key " + kid + " in the JWK set");
    }
    // JWS carries r || s (IEEE P1363), which this algorithm name takes as it is.
    Signature verifier = Signature.getInstance("SHA256withECDSAinP1363Format");
    verifier.initVerify(key);
    verifier.update((parts[0] + "." + parts[1]).getBytes(StandardCharsets.US_ASCII));
    if (!verifier.verify(unpadded(parts[2]))) {
      throw new SecurityException("the signature does not verify");
    }
    JsonObject claims = gson.fromJson(new String(unpadded(parts[1]), StandardCharsets.UTF_8), JsonObject.class);
    claims.addProperty("typ", header.get("typ").getAsString());
    return claims;
  }

  /** The proof with one claim changed (the attempts) and its signature kept. */
  private static String tampered(String proof) {
    String[] parts = proof.split("\\.");
    String claims = new String(unpadded(parts[1]), StandardCharsets.UTF_8).replace("\"attempts\":2", "\"attempts\":1");
    return parts[0]
        + "."
        + Base64.getUrlEncoder().withoutPadding().encodeToString(claims.getBytes(StandardCharsets.UTF_8))
        + "."
        + parts[2];
  }

  /** Tries to enrol `userId` and records the status only (a refused handshake is UNAVAILABLE). */
  private void probe(ManagedChannel channel, String userId) {
    try {
      EnrollmentServiceGrpc.newBlockingStub(channel)
          .withDeadlineAfter(10, TimeUnit.SECONDS)
          .enrollUser(
              EnrollUserRequest.newBuilder()
                  .setUserId(userId)
                  .setClientId("java-client")
                  .setSecurePhone("+33612345678")
                  .build());
      seen.put("probe_code", "OK");
    } catch (StatusRuntimeException refused) {
      seen.put("probe_code", refused.getStatus().getCode().name());
      seen.put("probe_description", String.valueOf(refused.getStatus().getDescription()));
    }
  }

  /**
   * Moves the user's number without a code, which the policy does not grant this caller: the refusal is
   * PERMISSION_DENIED with an ErrorInfo naming the method and the caller, and the number stays.
   */
  /** The TLS version the call's connection negotiated (its SSLSession), "plaintext" without TLS. */
  private static String tlsVersion(ManagedChannel channel) {
    AtomicReference<String> version = new AtomicReference<>("plaintext");
    ClientInterceptor reader =
        new ClientInterceptor() {
          @Override
          public <Q, A> ClientCall<Q, A> interceptCall(
              MethodDescriptor<Q, A> method, CallOptions options, Channel next) {
            return new ForwardingClientCall.SimpleForwardingClientCall<Q, A>(next.newCall(method, options)) {
              @Override
              public void start(ClientCall.Listener<A> listener, Metadata headers) {
                super.start(
                    new ForwardingClientCallListener.SimpleForwardingClientCallListener<A>(listener) {
                      @Override
                      public void onHeaders(Metadata received) {
                        SSLSession session = getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION);
                        if (session != null) {
                          version.set(session.getProtocol() + " " + session.getCipherSuite());
                        }
                        super.onHeaders(received);
                      }
                    },
                    headers);
              }
            };
          }
        };
    HealthGrpc.newBlockingStub(channel)
        .withInterceptors(reader)
        .withDeadlineAfter(5, TimeUnit.SECONDS)
        .check(HealthCheckRequest.getDefaultInstance());
    return version.get();
  }

  private void deniedOverride(ManagedChannel channel, String userId) throws Exception {
    var enrol = EnrollmentServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
    try {
      enrol.overrideSecurePhone(
          OverrideSecurePhoneRequest.newBuilder()
              .setUserId(userId)
              .setNewPhone("+33698765432")
              .setOperator("java-interop")
              .setReason("lost phone")
              .setRequestId("r-" + userId)
              .setActor("ops-1")
              .build());
      seen.put("denied_code", "OK");
    } catch (StatusRuntimeException refused) {
      seen.put("denied_code", refused.getStatus().getCode().name());
      Metadata refusedTrailers = refused.getTrailers();
      byte[] details = refusedTrailers == null ? null : refusedTrailers.get(DETAILS);
      if (details != null) {
        for (var detail : com.google.rpc.Status.parseFrom(details).getDetailsList()) {
          if (detail.is(ErrorInfo.class)) {
            ErrorInfo info = detail.unpack(ErrorInfo.class);
            seen.put("denied_reason", info.getReason());
            seen.put("denied_domain", info.getDomain());
            seen.put("denied_method", info.getMetadataOrDefault("method", null));
            seen.put("denied_caller", info.getMetadataOrDefault("caller", null));
          }
        }
      }
      seen.put(
          "denied_request_id_in_trailers", refusedTrailers != null && refusedTrailers.get(REQUEST_ID) != null);
    }
    seen.put(
        "denied_masked_phone_after",
        enrol.getUser(GetUserRequest.newBuilder().setUserId(userId).build()).getUser().getMaskedPhone());
  }

  private void run(ManagedChannel channel, Path smsFile, int idleSeconds, boolean denied) throws Exception {
    var enrol = EnrollmentServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
    var auth = AuthenticationServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
    String userId = "java-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
    String transactionId = "tx-" + userId;
    RequestContext context =
        RequestContext.newBuilder().setIp("203.0.113.9").setDeviceId("java-interop").setSessionId(userId).build();

    var enrolled =
        enrol.enrollUser(
            EnrollUserRequest.newBuilder()
                .setUserId(userId)
                .setClientId("java-client")
                .setSecurePhone("+33612345678")
                .build());
    expect("enrolled_status", enrolled.getUser().getStatus().name(), "USER_STATUS_ACTIVE");
    expect(
        "masked_phone",
        enrol.getUser(GetUserRequest.newBuilder().setUserId(userId).build()).getUser().getMaskedPhone(),
        "+33*******78");

    StartChallengeRequest start =
        StartChallengeRequest.newBuilder()
            .setUserId(userId)
            .setOperation(transfer(AMOUNT, IBAN, transactionId))
            .setContext(context)
            .build();
    AtomicReference<Metadata> headers = new AtomicReference<>();
    AtomicReference<Metadata> trailers = new AtomicReference<>();
    StartChallengeResponse first =
        auth.withInterceptors(MetadataUtils.newCaptureMetadataInterceptor(headers, trailers)).startChallenge(start);
    expect("delivery_state", first.getDeliveryState().name(), "DELIVERY_STATE_QUEUED");
    String requestId = trailers.get() == null ? null : trailers.get().get(REQUEST_ID);
    expect("request_id_in_trailers", requestId != null && !requestId.isEmpty(), true);
    var described = auth.getChallenge(GetChallengeRequest.newBuilder().setChallengeId(first.getChallengeId()).build());
    expect("amount_minor", described.getChallenge().getOperation().getCreditTransfer().getAmount().getAmountMinor(), AMOUNT);
    String firstCode = readCode(smsFile, first.getChallengeId());
    VerifyChallengeResponse mismatch = auth.verifyChallenge(verify(first.getChallengeId(), firstCode, AMOUNT + 1, transactionId, context));
    expect("changed_amount", mismatch.getResult().name(), "VERIFY_RESULT_OPERATION_MISMATCH");

    StartChallengeResponse second = auth.startChallenge(start);
    String code = readCode(smsFile, second.getChallengeId());
    String wrongCode = ((code.charAt(0) - '0' + 1) % 10) + code.substring(1);
    VerifyChallengeResponse wrong = auth.verifyChallenge(verify(second.getChallengeId(), wrongCode, AMOUNT, transactionId, context));
    expect("wrong_code", wrong.getResult().name(), "VERIFY_RESULT_WRONG_CODE");
    expect("attempts_left", wrong.getAttemptsLeft(), 2);
    VerifyChallengeResponse right = auth.verifyChallenge(verify(second.getChallengeId(), code, AMOUNT, transactionId, context));
    expect("right_code", right.getResult().name(), "VERIFY_RESULT_VERIFIED");
    String jwks = auth.getProofKeys(GetProofKeysRequest.getDefaultInstance()).getJwksJson();
    try {
      JsonObject claims = verifiedClaims(right.getProof(), jwks);
      expect("proof_verifies", "verified", "verified");
      expect("proof_sub", claims.get("sub").getAsString(), userId);
      expect("proof_challenge_id", claims.get("challenge_id").getAsString(), second.getChallengeId());
      expect("proof_op", claims.get("op").getAsString(), "credit_transfer");
      expect("proof_attempts", claims.get("attempts").getAsInt(), 2);
      expect("proof_typ", claims.get("typ").getAsString(), "sesame-proof+jwt");
    } catch (Exception refused) {
      expect("proof_verifies", refused.toString(), "verified");
    }
    boolean tamperedRefused;
    try {
      verifiedClaims(tampered(right.getProof()), jwks);
      tamperedRefused = false;
    } catch (SecurityException expected) {
      tamperedRefused = true;
    }
    expect("tampered_proof_refused", tamperedRefused, true);
    String fetched = auth.getProof(GetProofRequest.newBuilder().setChallengeId(second.getChallengeId()).build()).getProof();
    expect(
        "get_proof_verifies",
        verifiedClaims(fetched, jwks).get("challenge_id").getAsString().equals(second.getChallengeId()),
        true);
    VerifyChallengeResponse replay = auth.verifyChallenge(verify(second.getChallengeId(), code, AMOUNT, transactionId, context));
    expect("replay", replay.getResult().name(), "VERIFY_RESULT_ALREADY_USED");

    // A bad IBAN checksum (77 instead of 76): INVALID_ARGUMENT, with a BadRequest naming the field, and the
    // request id beside the rich status in the trailers.
    try {
      auth.startChallenge(
          StartChallengeRequest.newBuilder()
              .setUserId(userId)
              .setOperation(transfer(AMOUNT, "FR77 3000 6000 0112 3456 7890 189", transactionId))
              .build());
      expect("bad_iban_code", 0, Status.Code.INVALID_ARGUMENT.value());
    } catch (StatusRuntimeException refused) {
      expect("bad_iban_code", refused.getStatus().getCode().value(), Status.Code.INVALID_ARGUMENT.value());
      Metadata refusedTrailers = refused.getTrailers();
      com.google.rpc.Status status = com.google.rpc.Status.parseFrom(refusedTrailers.get(DETAILS));
      expect("bad_iban_details_code", status.getCode(), Status.Code.INVALID_ARGUMENT.value());
      List<String> fields = new ArrayList<>();
      for (var detail : status.getDetailsList()) {
        if (detail.is(BadRequest.class)) {
          for (var violation : detail.unpack(BadRequest.class).getFieldViolationsList()) {
            fields.add(violation.getField());
          }
        }
      }
      expect("bad_iban_fields", String.join(",", fields), "operation.credit_transfer.payee.iban");
      expect("refusal_request_id_in_trailers", refusedTrailers.get(REQUEST_ID) != null, true);
    }
    if (denied) {
      seen.put("tls_version", tlsVersion(channel));
      deniedOverride(channel, userId);
    }
    if (idleSeconds > 0) {
      idleWatch(channel, idleSeconds);
    }
  }

  private static VerifyChallengeRequest verify(
      String challengeId, String code, long amountMinor, String transactionId, RequestContext context) {
    return VerifyChallengeRequest.newBuilder()
        .setChallengeId(challengeId)
        .setCode(code)
        .setOperation(transfer(amountMinor, IBAN, transactionId))
        .setContext(context)
        .build();
  }

  /** Holds a health Watch open for `idleSeconds` while the channel only pings, then calls on it again. */
  private void idleWatch(ManagedChannel channel, int idleSeconds) throws Exception {
    CompletableFuture<HealthCheckResponse> firstAnswer = new CompletableFuture<>();
    CompletableFuture<Status> ended = new CompletableFuture<>();
    HealthGrpc.newStub(channel)
        .watch(
            HealthCheckRequest.getDefaultInstance(),
            new StreamObserver<HealthCheckResponse>() {
              @Override
              public void onNext(HealthCheckResponse answer) {
                firstAnswer.complete(answer);
              }

              @Override
              public void onError(Throwable error) {
                firstAnswer.completeExceptionally(error);
                ended.complete(Status.fromThrowable(error));
              }

              @Override
              public void onCompleted() {
                ended.complete(Status.OK);
              }
            });
    firstAnswer.get(5, TimeUnit.SECONDS);
    try {
      Status status = ended.get(idleSeconds, TimeUnit.SECONDS);
      expect("watch_while_idle", status.getCode() + ": " + status.getDescription(), "alive");
    } catch (TimeoutException stillOpen) {
      expect("watch_while_idle", "alive", "alive");
    }
    HealthCheckResponse after =
        HealthGrpc.newBlockingStub(channel)
            .withDeadlineAfter(5, TimeUnit.SECONDS)
            .check(HealthCheckRequest.getDefaultInstance());
    expect("call_after_idle", after.getStatus().name(), "SERVING");
  }

  public static void main(String[] args) throws Exception {
    Map<String, String> flags = new LinkedHashMap<>(Map.of("-idle", "0"));
    for (int i = 0; i + 1 < args.length; i += 2) {
      flags.put(args[i], args[i + 1]);
    }
    if (args.length % 2 != 0 || !flags.containsKey("-target") || !flags.containsKey("-sms-file")) {
      System.err.println("usage: SesameClient -target HOST:PORT -sms-file FILE [-idle SECONDS]");
      System.exit(2);
    }
    NettyChannelBuilder builder =
        NettyChannelBuilder.forTarget(flags.get("-target"))
            .keepAliveTime(10, TimeUnit.SECONDS)
            .keepAliveTimeout(5, TimeUnit.SECONDS)
            .keepAliveWithoutCalls(true);
    SesameClient client = new SesameClient();
    if (flags.containsKey("-ca")) {
      // grpc-netty's defaults: TLS 1.2+, HTTP/2 ciphers, ALPN "h2"; the provider is OpenSSL through
      // netty-tcnative when it loads, else the JDK's (which Debian's Netty 4.1.48 cannot use for ALPN).
      SslContext tls =
          GrpcSslContexts.forClient()
              .trustManager(Path.of(flags.get("-ca")).toFile())
              .keyManager(Path.of(flags.get("-cert")).toFile(), Path.of(flags.get("-key")).toFile())
              .build();
      client.seen.put("tls_provider", tls.getClass().getSimpleName());
      builder.sslContext(tls);
      if (flags.containsKey("-server-name")) {
        builder.overrideAuthority(flags.get("-server-name"));
      }
    } else {
      builder.usePlaintext();
    }
    ManagedChannel channel = builder.build();
    String crashed = null;
    try {
      if (flags.containsKey("-probe")) {
        client.probe(channel, flags.get("-probe"));
      } else {
        client.run(
            channel,
            Path.of(flags.get("-sms-file")),
            Integer.parseInt(flags.get("-idle")),
            Boolean.parseBoolean(flags.getOrDefault("-denied", "false")));
      }
    } catch (Exception error) {
      crashed = error.toString();
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    boolean ok = crashed == null && client.failures.isEmpty();
    Map<String, Object> summary = new LinkedHashMap<>();
    summary.put("ok", ok);
    summary.put("seen", client.seen);
    summary.put("failures", client.failures);
    summary.put("crashed", crashed);
    System.out.println(new GsonBuilder().serializeNulls().create().toJson(summary));
    System.exit(ok ? 0 : 1);
  }
}
