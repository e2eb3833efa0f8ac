//! Known-answer tests of the transform primitives, each vector with its
//! source. (Whole-packet vectors — RFC 7634 Appendix A and the strongSwan
//! captures — are in `src/sa.rs` and `tests/captures.rs`.)

use plexgate_ipsec::{EspCipher, EspTransform};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn aead_kat(t: EspTransform, key_salt: &str, iv: &str, aad: &str, plain: &[u8], cipher_tag: &str) {
    let c = EspCipher::new(t, &h(key_salt), &[]).unwrap();
    let iv: [u8; 8] = h(iv).try_into().unwrap();
    let aad = h(aad);
    let expect = h(cipher_tag);
    let mut buf = plain.to_vec();
    let tag = c.aead_seal(&iv, &aad, &mut buf).unwrap();
    buf.extend_from_slice(&tag);
    assert_eq!(hex::encode(&buf), hex::encode(&expect));
    let n = c.aead_open(&iv, &aad, &mut buf).unwrap();
    assert_eq!(&buf[..n], plain);
    // One flipped bit anywhere fails.
    let mut bad = expect.clone();
    bad[expect.len() / 2] ^= 0x10;
    assert!(c.aead_open(&iv, &aad, &mut bad).is_none());
    let mut bad_aad = aad.clone();
    if let Some(b) = bad_aad.first_mut() {
        *b ^= 1;
        let mut again = expect.clone();
        assert!(c.aead_open(&iv, &bad_aad, &mut again).is_none());
    }
}

const GCM_PLAIN_60: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
const GCM_AAD_20: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

/// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test case 4
/// (AES-128, 96-bit IV = salt cafebabe || IV facedbaddecaf888, 20 bytes AAD).
#[test]
fn gcm128_mcgrew_viega_case_4() {
    aead_kat(
        EspTransform::AesGcm128,
        "feffe9928665731c6d6a8f9467308308 cafebabe",
        "facedbaddecaf888",
        GCM_AAD_20,
        &h(GCM_PLAIN_60),
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
         21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091
         5bc94fbc3221a5db94fae95ae7121a47",
    );
}

/// McGrew & Viega test case 3 (AES-128, no AAD, 64 bytes).
#[test]
fn gcm128_mcgrew_viega_case_3() {
    aead_kat(
        EspTransform::AesGcm128,
        "feffe9928665731c6d6a8f9467308308 cafebabe",
        "facedbaddecaf888",
        "",
        &h(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
            1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        ),
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
         21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985
         4d5c2af327cd64a62cf35abd2ba6fab4",
    );
}

/// McGrew & Viega test case 16 (AES-256, 20 bytes AAD).
#[test]
fn gcm256_mcgrew_viega_case_16() {
    aead_kat(
        EspTransform::AesGcm256,
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308 cafebabe",
        "facedbaddecaf888",
        GCM_AAD_20,
        &h(GCM_PLAIN_60),
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662
         76fc6ece0f4e1768cddf8853bb2d551b",
    );
}

/// McGrew & Viega test case 13 (AES-256, all-zero key, empty plaintext).
#[test]
fn gcm256_mcgrew_viega_case_13() {
    aead_kat(
        EspTransform::AesGcm256,
        "0000000000000000000000000000000000000000000000000000000000000000 00000000",
        "0000000000000000",
        "",
        &[],
        "530f8afbc74536b9a963b4f1c4cb738b",
    );
}

/// RFC 7539 §2.8.2 AEAD_CHACHA20_POLY1305 test vector (the 96-bit nonce
/// 07000000 40414243 44454647 split as salt || IV, as RFC 7634 does).
#[test]
fn chacha20_poly1305_rfc7539_2_8_2() {
    aead_kat(
        EspTransform::ChaCha20Poly1305,
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f 07000000",
        "4041424344454647",
        "50515253c0c1c2c3c4c5c6c7",
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
         3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
         92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
         3ff4def08e4b7a9de576d26586cec64b6116
         1ae10b594f09e26a7e902ecbd0600691",
    );
}

fn cbc_kat(key: &str, iv: &str, plain: &[u8], cipher: &str) {
    let c = EspCipher::new(EspTransform::AesCbc128HmacSha256, &h(key), &[0u8; 32]).unwrap();
    let iv: [u8; 16] = h(iv).try_into().unwrap();
    let mut buf = plain.to_vec();
    c.cbc_encrypt(&iv, &mut buf).unwrap();
    assert_eq!(hex::encode(&buf), hex::encode(h(cipher)));
    c.cbc_decrypt(&iv, &mut buf).unwrap();
    assert_eq!(buf, plain);
}

/// RFC 3602 §4, Case #1: encrypting 16 bytes (1 block) using AES-CBC with a
/// 128-bit key.
#[test]
fn aes_cbc_rfc3602_case_1() {
    cbc_kat(
        "06a9214036b8a15b512e03d534120006",
        "3dafba429d9eb430b422da802c9fac41",
        b"Single block msg",
        "e353779c1079aeb82708942dbe77181a",
    );
}

/// RFC 3602 §4, Case #2: 32 bytes (2 blocks).
#[test]
fn aes_cbc_rfc3602_case_2() {
    cbc_kat(
        "c286696d887c9aa0611bbb3e2025a45a",
        "562e17996d093d28ddb3ba695a2e6f58",
        &h("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
        "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
    );
}

/// RFC 3602 §4, Case #3: 48 bytes (3 blocks).
#[test]
fn aes_cbc_rfc3602_case_3() {
    cbc_kat(
        "6c3ea0477630ce21a2ce334aa746c2cd",
        "c782dc4c098c66cbd9cd27d825682c81",
        b"This is a 48-byte message (exactly 3 AES blocks)",
        "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5021c19216bad525c8579695d83ba2684",
    );
}

/// NIST SP 800-38A F.2.5, CBC-AES256.Encrypt (the AES-256 key path).
#[test]
fn aes256_cbc_sp800_38a_f25() {
    let c = EspCipher::new(
        EspTransform::AesCbc256HmacSha256,
        &h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
        &[0u8; 32],
    )
    .unwrap();
    let iv: [u8; 16] = h("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
    let plain = h(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51
                   30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
    );
    let mut buf = plain.clone();
    c.cbc_encrypt(&iv, &mut buf).unwrap();
    assert_eq!(
        hex::encode(&buf),
        "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d\
         39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"
    );
    c.cbc_decrypt(&iv, &mut buf).unwrap();
    assert_eq!(buf, plain);
}

fn hmac_kat(key: &[u8], data: &[u8], icv: &str) {
    hmac_kat_with(EspTransform::AesCbc128HmacSha256, key, data, icv);
}

fn hmac_kat_with(t: EspTransform, key: &[u8], data: &[u8], icv: &str) {
    let c = EspCipher::new(t, &vec![0u8; t.enc_key_len()], key).unwrap();
    // Split the data to check that the parts are concatenated.
    let (a, b) = data.split_at(data.len() / 2);
    assert_eq!(hex::encode(c.hmac_icv(&[a, b]).unwrap()), icv);
}

/// RFC 4868 §2.7.2, HMAC-SHA-256-128 authentication test vectors
/// (32-byte keys): Test Cases AUTH256-1, AUTH256-2, AUTH256-3.
#[test]
fn hmac_sha256_128_rfc4868() {
    hmac_kat(&[0x0b; 32], b"Hi There", "198a607eb44bfbc69903a0f1cf2bbdc5");
    hmac_kat(
        b"JefeJefeJefeJefeJefeJefeJefeJefe",
        b"what do ya want for nothing?",
        "167f928588c5cc2eef8e3093caa0e87c",
    );
    hmac_kat(&[0xaa; 32], &[0xdd; 50], "cdcb1220d1ecccea91e53aba3092f962");
}

/// RFC 4868 §2.7.2, HMAC-SHA-384-192 authentication test vectors (48-byte
/// keys): Test Cases AUTH384-1, AUTH384-2, AUTH384-3 (the first 192 bits of
/// the PRF output the RFC lists for each).
#[test]
fn hmac_sha384_192_rfc4868() {
    for t in [
        EspTransform::AesCbc128HmacSha384,
        EspTransform::AesCbc256HmacSha384,
    ] {
        hmac_kat_with(
            t,
            &[0x0b; 48],
            b"Hi There",
            "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
        );
        hmac_kat_with(
            t,
            b"JefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefe",
            b"what do ya want for nothing?",
            "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d",
        );
        hmac_kat_with(
            t,
            &[0xaa; 48],
            &[0xdd; 50],
            "809f439be00274321d4a538652164b53554a508184a0c316",
        );
    }
}

/// RFC 4868 §2.7.2, HMAC-SHA-512-256 authentication test vectors (64-byte
/// keys): Test Cases AUTH512-1, AUTH512-2, AUTH512-3 (the first 256 bits of
/// the PRF output the RFC lists for each).
#[test]
fn hmac_sha512_256_rfc4868() {
    for t in [
        EspTransform::AesCbc128HmacSha512,
        EspTransform::AesCbc256HmacSha512,
    ] {
        hmac_kat_with(
            t,
            &[0x0b; 64],
            b"Hi There",
            "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
        );
        hmac_kat_with(
            t,
            b"JefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefe",
            b"what do ya want for nothing?",
            "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454",
        );
        hmac_kat_with(
            t,
            &[0xaa; 64],
            &[0xdd; 50],
            "2ee7acd783624ca9398710f3ee05ae41b9f9b0510c87e49e586cc9bf961733d8",
        );
    }
}
