"""The verified vectors of approval-callbacks.md against bridge.native_crypto, plus its failure modes."""

from __future__ import annotations

import base64

import pytest

from bridge.errors import MalformedPayload
from bridge.sources.native import crypto as nc

# ---------------------------------------------------------------- DingTalk (WX family)

D_A = dict(
    token="mryue",
    aes_key="Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
    receive_id="ding6ccabc44d2c8d38b",
    signature="03044561471240d4a14bb09372dfcfd4fd0e40cb",
    timestamp="1608001896814",
    nonce="WL4PK6yA",
    encrypt="0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhE"
    "LOFchzNukR+t8SB/qk4ROMu3",
    plaintext=b'{"EventType":"check_url"}',
    random16=b"l7Y3EcX2CU5w8av3",
)
D_B = dict(
    token="tokenxxxx",
    aes_key="o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
    receive_id="dingxxxxxx",
    signature="f36f4ba5337d426c7d4bca0dbcb06b3ddc1388fc",
    timestamp="1605695694141",
    nonce="WelUQl6bCqcBa2fM",
    encrypt="X1VSe9cTJUMZu60d3kyLYTrBq5578ZRJtteU94wG0Q4Uk6E/wQYeJRIC0/UFW5Wkya1Ihz9oXAdLlyC9TRaqsQ==",
    plaintext=b"success",
    random16=None,
)
D_C = dict(
    token="123456",
    aes_key="4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
    receive_id="suite4xxxxxxxxxxxxxxx",
    signature="5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
    timestamp="1445827045067",
    nonce="nEXhMP4r",
    encrypt="1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JV"
    "Ya9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9"
    "lQ==",
    plaintext=b'{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}',
    random16=b"hU3bEfGZZewzhG5a",
)
D_D = dict(
    token="123456",
    aes_key="1234567890123456789012345678901234567890123",
    receive_id="dingsnotzck6pm5veliw",
    signature="9a95a004dd16f5c307e849b994173f76aa26e5eb",
    timestamp="1614767836",
    nonce="A7Co0cJLMzIDtMMI",
    encrypt="YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==",
    plaintext=b"success",
    random16=b"dICkEDLj0eb6yAbc",
)
D_E_PLAINTEXT = (
    '{"EventType":"bpms_instance_change","EventTime":1663143335567,"CorpId":"dingcorp0001","BizId":"1663143335567",'
    '"eventId":"c7c7120f2c0741900ebdba0318c8","processInstanceId":"9Qgx5QqjR7axMw01","finishTime":1663143335000,'
    '"createTime":1663143300000,"processCode":"PROC-TEST-01","businessId":"202209141615000123","type":"finish",'
    '"title":"报销-测试","url":"https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm","staffId":"manager75",'
    '"result":"agree"}'
).encode()
D_E_ENCRYPT = (
    "GCr6999U/V4/3veZ85Bxl/HN5zR96rr7I++Z8YjKpT4B9DEnB9c+AtGVHryK1mKhyKFwCsXr3GCOleXDV5PXB9PGrBu5eN/fEZqaVPQoc2r+n1S"
    "3Bk+8T8/Qp8OmkoCD6i+KiiLNBAQHlr4m6w7E+MgsDFl5l47IBNNOB5qWIFBQV2b5TQY7ItBbyrgaEtP/eDu+gSfogG5ZEDt+x7RQHkbSc9jTfQs"
    "Rno5jzHTLM+d5OjI4M8/bV4xk0i9v/0UvurZKAsEFSBFDAxLk4UH9NazBntAz10ESJU3og8CODTQcjrVBhhO/UvCluPw8qYdDGOv8TeB0RVBLhA4"
    "K2m4udS6NQ4VxrRM8+4dfomP5NLvkfMSVYJ6l+URBv9FUlvgkf6UiPjO/W3DAnK7q0xiLR47aNAhaOBq7uFjVO9Hptt2l2WAEcBd+kxKroMe6ER3"
    "kXbqIYxUarJhT50WEB4SXNwXnPLR/E1BpBrun4I8nuGLqfB1+oRTJUvDwGxnwOw2HwDqYVxqKCX85oaJQauGEbtxc+O86x6doLKf9cc/VM8UtNvU"
    "/JYfMkl7Re1BUBr+JTxvtvyT40bbYrxtcZiw6Z0w8iLt4v+FOp4xvXplQOcl5kttC0Fs3W6Vv5v+3WfTw7pdyjGPGpvsbDyTe8yRHROpUshreM0+"
    "njXDtuZKD1OA="
)
D_F_ENCRYPT = "Gg1ruTtt6YTsvh9RfdxRuTCu0/ibzkvmyP7IpPSO/LO+1wgkdzI29SpnJyefeUQFPXGgI7s1KSeSsDPa/zx72g=="

# ---------------------------------------------------------------- WeCom (WX family)

W_AB = dict(
    token="hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
    aes_key="6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    receive_id="ww1436e0e65a779aee",
)
W_CD = dict(token="QDG6eK", aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", receive_id="wx5823bf96d3bd56c7")
W_B_ENCRYPT = (
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+kkY"
    "cD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka"
    "7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49H"
    "KYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
)
W_B_PLAINTEXT = (
    "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName><CreateTime>1476422779"
    "</CreateTime><MsgType>text</MsgType><Content>你好</Content><MsgId>1456453720</MsgId><AgentID>1000002</AgentID>"
    "</xml>"
).encode()
W_C_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3"
    "TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gs"
    "ijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUa"
    "x5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIG"
    "HBZZIs2pDBS8R07+qN+E7Q=="
)
W_E_PLAINTEXT = (
    "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>1571732272</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[sys_approval_change]]>"
    "</Event><AgentID>3010040</AgentID><ApprovalInfo><SpNoStr><![CDATA[202506110001]]></SpNoStr><SpNo>202506110001"
    "</SpNo><SpName><![CDATA[示例模板]]></SpName><SpStatus>2</SpStatus><TemplateId><![CDATA[3TkaH5KFbrG9heEQWLJjhgpFw"
    "mqAFB4dLEnapaB7aaa]]></TemplateId><ApplyTime>1571728713</ApplyTime><Applyer><UserId><![CDATA[WuJunJie]]>"
    "</UserId><Party><![CDATA[1]]></Party></Applyer><StatuChangeEvent>2</StatuChangeEvent></ApprovalInfo></xml>"
).encode()
W_E_ENCRYPT = (
    "/K4xJYsBwQssQzE/v2nbvG//geNqYgLcsQd7zOTJWKK9bw83h2k45tp+masTXSqIKQl/k/dAnZlqSKkqiW9c2PVLfkm1FP/IVtqkQ5gnCY7QuU05"
    "QpFCeNx8VKUw5FZfs4wepvW0hg9tS3euXvid9ITSMV8fZf3HOjFZokjBXVKCK9rJVdvEHMYWvKGa1m4L3PDqp7ZAs/ghzcr9I2+6be29SpiSDG47"
    "rw8KIItdTjNEWU8Epi2T6SKnuYMA+rMJ0IEUhFzXf11WpZN8hi8PoRfbRuWAi9xBbRgc25Yb6HB/qXXc1kmxAYvhP479cmjllN37cw2ClpozqP/7"
    "1xcyEu0zO+tLNWllxXe6EpdK2PUs5MAIAO1FVFx2dEe8pTqxwGYRL/4ckWzyCZr1R6JfiNmU6rOP0Lg1jOSq4C0Tlibz1W3iR2n4w1FluQEBaoXr"
    "20yzhRG3gm1Fl7yOwQlqAdnQ6tfjzXcXtCKGueUr/Sr/omoQbb14jEprHzA+yUJzmh5/9l9ECDKCpXooezyh+0oHehBxboAR63Hf+kZC3xTnJH0c"
    "1yMrmI447yU53OLeNi9gzZ6DD/DgimVUO5GDTCmoox1TCL/iCv3FTWWQRr7Bsmi8DaCuDMrF1330QU7unumFsfSqL+PABaMEEpPQm7nEQ3+o58Nm"
    "/5K1EYhc95KFqSdBYJIlA2bdjL22qUu3QyLJxt6r5LGKknvuxTDr/YVMrtmiA1gdC9tGvagdApQ3v/BGyE6mB0aON5CYLwBGBWCGa9TPvI4HCxGR"
    "lKGXI3djCAN3XgI4xvj1jxFGPH9oL/yvB7z5v9cc3DIKgX3k1NVAm48Q7iFbDdnWTBK7v3YeXCF0XfUzYo8FD/7AKfmmSTcCGrwDO5cGzjkV8HZa"
    "9m9DZChRYtVu5nn2HiH8cvBpCQThQSh9/jm8aOF8MOg="
)

# ---------------------------------------------------------------- Feishu

F_KEY = "test key"
F_B_PLAINTEXT = b'{"challenge":"ajls384kdjx98XX","token":"vt_test_token","type":"url_verification"}'
F_B_ENCRYPT = (
    "AAECAwQFBgcICQoLDA0ODw9mLTIAZS9jAmGTQ1wAhHpnBHVL2wRjH9rPunQdQC1vhrBk0wLCLXlUpBdzcFTudl5xyjggzQIkOQ4COTrPUeuqmih1"
    "UWJ9Rsf3bSkYbOP9MHQEH2F+wk6B9zZcBdI0AQ=="
)
F_C_PLAINTEXT = (
    b'{"ts":"1666079207.7171419","uuid":"bc447199585340d1f3728d26b1c0297a","token":"vt_test_token","type":"event_callb'
    b'ack","event":{"app_id":"cli_test","tenant_key":"tk_test","type":"approval_instance","approval_code":"7C468A54-874'
    b'5-2245-9675-08B7C63E7A85","instance_code":"81D31358-93AF-92D6-7425-01A5D67C4E71","status":"APPROVED","operate_ti'
    b'me":"1666079207003","instance_operate_time":"1666079207003","uuid":"6525bffb"}}'
)
F_C_ENCRYPT = (
    "EBESExQVFhcYGRobHB0eH7VMgbOaciVpTLT2XJ139ja31txfoljXmXAQPxU5BVTZFvilE0me0ebT5XQ3DLmOQ47qyvx/6K1K7geohuadG7tzeU6b"
    "XAZhFpNXdjKF/23C++lLTBnJUrknjFapoY905DBUhqc7UP3a8Kd/LoUyxAeLei4SNNmnxN8TDMDezXoBB5Thd8/zuCQbfcOkQ0bX2g3YCKhFH5om"
    "L3zFtJxWSQuvxGR+dODZhDcvaHnPjUwad19KoEMUMwGtB2TUofXXz5uch0Wtqlb2kfr3h0BZhH8LrDye/CYsbPXSHGLkHy//AtJjf64HgUOxYLe5"
    "qowE3WvjWMGkjuVPLehckoy8rUW9nLcFG+IRsEvKIz6hcM66cLEnoWAzI/FMMvS8HtTf1kXn4CGf9uCFMI7KTKs/e9GRwessvMUcdpLaPcAJgZyX"
    "dITC0vGbvXlIPEcUbmH8ptewloW+KER+ymRrQIrI7V4lwcqiqUXhQlf1/M2cZKlA+ju/LG8MzXmsUchjUw76yJCawxzlm7K9tH9/6l+/dOBpKjoQ"
    "S1Bo2yhPaM/IAljg7wDpT5LciH22mbbOO/D+ZA=="
)
F_C_SIGNATURE = "363fbc6fcec4e4a1293617f43d0c9cba100d1a18bf1ffd7cd2633077353b439c"


def _decrypt(v: dict) -> bytes:
    return nc.wx_decrypt(nc.wx_key(v["aes_key"]), v["encrypt"], v["receive_id"])


@pytest.mark.parametrize("vector", [D_A, D_B, D_C, D_D], ids=["D-A", "D-B", "D-C", "D-D"])
def test_dingtalk_official_vectors_verify_and_decrypt(vector: dict) -> None:
    signature = nc.wx_signature(vector["token"], vector["timestamp"], vector["nonce"], vector["encrypt"])
    assert signature == vector["signature"]
    assert _decrypt(vector) == vector["plaintext"]


@pytest.mark.parametrize("vector", [D_A, D_C, D_D], ids=["D-A", "D-C", "D-D"])
def test_dingtalk_vectors_reencrypt_byte_exact(vector: dict) -> None:
    key = nc.wx_key(vector["aes_key"])
    assert nc.wx_encrypt(key, vector["plaintext"], vector["receive_id"], vector["random16"]) == vector["encrypt"]


def test_d_a_key_decodes_to_the_documented_bytes() -> None:
    assert nc.wx_key(D_A["aes_key"]).hex() == "62e7b411f74de7dd3473571ee5c7fa035e7673adc30ded7cd3c6bad1ce5e71de"


def test_d_e_approval_event_encrypts_and_signs_as_documented() -> None:
    key = nc.wx_key(D_D["aes_key"])
    assert len(D_E_PLAINTEXT) == 450  # non-ASCII title: the length prefix counts bytes
    encrypt = nc.wx_encrypt(key, D_E_PLAINTEXT, D_D["receive_id"], b"0123456789abcdef")
    assert encrypt == D_E_ENCRYPT
    assert nc.wx_signature("123456", "1663143335600", "nonce123", encrypt) == "00b7246a6fe6c8b3aba4c54b034c7181062fb424"
    assert nc.wx_decrypt(key, D_E_ENCRYPT, D_D["receive_id"]) == D_E_PLAINTEXT


def test_d_f_success_reply_encrypts_and_signs_as_documented() -> None:
    key = nc.wx_key(D_D["aes_key"])
    encrypt = nc.wx_encrypt(key, b"success", D_D["receive_id"], b"fedcba9876543210")
    assert encrypt == D_F_ENCRYPT
    assert nc.wx_signature("123456", "1663143335700", "resp1234", encrypt) == "9bc87eab67bc3b17837b79be37d01b184058fccc"


@pytest.mark.parametrize(
    ("creds", "signature", "timestamp", "nonce", "echostr", "plaintext"),
    [
        pytest.param(W_AB, "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", "47744683",
                     "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
                     b"1288432023552776189", id="W-A"),
        pytest.param(W_CD, "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780",
                     "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
                     b"1616140317555161061", id="W-D"),
        pytest.param(W_AB, "88080caa2cbf5c66bca496b7d0e09eaf43c70520", "1571732300", "99887766",
                     "BDXwBah1UBgzbW/KNrMgV6t+8IWooW/vwL7NxUeSQu1TBcwJIw+Nxjv5UIadLYWZTmNxJnvAvPdkCrWoMhw0fA==",
                     b"4868163428351249637", id="W-F"),
    ],
)
def test_wecom_echostr_vectors(creds: dict, signature: str, timestamp: str, nonce: str, echostr: str,
                               plaintext: bytes) -> None:
    assert nc.wx_signature(creds["token"], timestamp, nonce, echostr) == signature
    assert nc.wx_decrypt(nc.wx_key(creds["aes_key"]), echostr, creds["receive_id"]) == plaintext


def test_w_a_key_decodes_to_the_documented_bytes() -> None:
    assert nc.wx_key(W_AB["aes_key"]).hex() == "eaa91d32babaf274ca76ece72583b5037ed6da8120a64314be4b6d453a2a854b"


def test_w_b_message_verifies_decrypts_and_reencrypts_byte_exact() -> None:
    key = nc.wx_key(W_AB["aes_key"])
    assert nc.wx_signature(W_AB["token"], "1476422779", "1597212914", W_B_ENCRYPT) == (
        "0c3914025cb4b4d68103f6bfc8db550f79dcf48e"
    )
    assert nc.wx_decrypt(key, W_B_ENCRYPT, W_AB["receive_id"]) == W_B_PLAINTEXT
    assert nc.wx_encrypt(key, W_B_PLAINTEXT, W_AB["receive_id"], b"694ce5a83ae07fe3") == W_B_ENCRYPT


def test_w_c_appendix_message_verifies_and_decrypts() -> None:
    assert nc.wx_signature(W_CD["token"], "1409659813", "1372623149", W_C_ENCRYPT) == (
        "477715d11cdb4164915debcba66cb864d751f3e6"
    )
    plaintext = nc.wx_decrypt(nc.wx_key(W_CD["aes_key"]), W_C_ENCRYPT, W_CD["receive_id"])
    assert plaintext.startswith(b"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n")
    assert b"<Content><![CDATA[hello]]></Content>" in plaintext
    assert b"<AgentID>218</AgentID>" in plaintext


def test_w_e_approval_change_encrypts_and_signs_as_documented() -> None:
    key = nc.wx_key(W_AB["aes_key"])
    assert len(W_E_PLAINTEXT) == 648
    encrypt = nc.wx_encrypt(key, W_E_PLAINTEXT, W_AB["receive_id"], b"1234567890123456")
    assert encrypt == W_E_ENCRYPT
    assert nc.wx_signature(W_AB["token"], "1571732273", "1597212914", encrypt) == (
        "b01d1635dd523d36cf550f6191a69f7508802c11"
    )


def test_w_c_credentials_do_not_open_w_a_messages() -> None:
    # the reference warns that W-D belongs to the W-C credentials: mixing them must fail, not decrypt garbage
    with pytest.raises(MalformedPayload):
        nc.wx_decrypt(nc.wx_key(W_CD["aes_key"]), W_B_ENCRYPT, W_AB["receive_id"])


# ---------------------------------------------------------------- Feishu vectors


def test_f_a_official_vector() -> None:
    key = nc.feishu_key(F_KEY)
    assert key.hex() == "fa2bdca424f01f01ffb48df93acc35d439c7fd331a1a7fba6ac2fd83aa9ab31a"
    encrypt = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="
    assert nc.feishu_decrypt(key, encrypt) == b"hello world"
    assert nc.feishu_encrypt(key, b"hello world", bytes.fromhex("3f7ef0f9564898d80f10ed5106127a46")) == encrypt


def test_f_b_url_verification_vector() -> None:
    key = nc.feishu_key(F_KEY)
    assert nc.feishu_encrypt(key, F_B_PLAINTEXT, bytes(range(16))) == F_B_ENCRYPT
    assert nc.feishu_decrypt(key, F_B_ENCRYPT) == F_B_PLAINTEXT


def test_f_c_approval_instance_vector_and_signature_over_raw_body() -> None:
    key = nc.feishu_key(F_KEY)
    assert nc.feishu_encrypt(key, F_C_PLAINTEXT, bytes(range(16, 32))) == F_C_ENCRYPT
    assert nc.feishu_decrypt(key, F_C_ENCRYPT) == F_C_PLAINTEXT
    body = b'{"encrypt":"' + F_C_ENCRYPT.encode() + b'"}'
    assert nc.feishu_signature("1666079208", "a1b2c3d4", F_KEY, body) == F_C_SIGNATURE
    reserialised = b'{"encrypt": "' + F_C_ENCRYPT.encode() + b'"}'
    assert nc.feishu_signature("1666079208", "a1b2c3d4", F_KEY, reserialised) != F_C_SIGNATURE


# ---------------------------------------------------------------- failure modes


def test_aes_key_must_be_43_alphanumerics() -> None:
    for bad in ("", D_D["aes_key"][:-1], D_D["aes_key"] + "1", D_D["aes_key"][:-1] + "+"):
        with pytest.raises(ValueError, match="43"):
            nc.wx_key(bad)


def test_tampered_ciphertext_fails_signature() -> None:
    tampered = "A" + D_D["encrypt"][1:]
    assert nc.wx_signature(D_D["token"], D_D["timestamp"], D_D["nonce"], tampered) != D_D["signature"]
    assert nc.signatures_match(D_D["signature"], D_D["signature"].upper())
    assert not nc.signatures_match(D_D["signature"], "0" * 40)
    assert not nc.signatures_match(D_D["signature"], "")


def test_wrong_receive_id_is_refused_and_named() -> None:
    with pytest.raises(MalformedPayload, match="wrong receive id") as info:
        nc.wx_decrypt(nc.wx_key(D_D["aes_key"]), D_D["encrypt"], "dingsomeoneelse")
    assert D_D["aes_key"] not in str(info.value)


def _raw_wx(key: bytes, body: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(body) + enc.finalize()).decode()


@pytest.mark.parametrize("last", [0, 33, 200])
def test_out_of_range_pad_byte_is_bad_padding(last: int) -> None:
    key = nc.wx_key(D_D["aes_key"])
    body = b"r" * 16 + b"\x00\x00\x00\x07success" + D_D["receive_id"].encode()
    body += b"\x00" * (63 - len(body)) + bytes([last])
    with pytest.raises(MalformedPayload, match="bad padding"):
        nc.wx_decrypt(key, _raw_wx(key, body), D_D["receive_id"])


def test_inconsistent_pad_bytes_are_bad_padding() -> None:
    key = nc.wx_key(D_D["aes_key"])
    body = b"r" * 16 + b"\x00\x00\x00\x07success" + D_D["receive_id"].encode()
    body += b"\x01" * (64 - len(body) - 1) + bytes([64 - len(body)])
    with pytest.raises(MalformedPayload, match="bad padding"):
        nc.wx_decrypt(key, _raw_wx(key, body), D_D["receive_id"])


def test_length_prefix_past_the_end_is_refused() -> None:
    key = nc.wx_key(D_D["aes_key"])
    body = b"r" * 16 + b"\x00\x00\xff\xffsuccess"
    body += bytes([32 - len(body) % 32]) * (32 - len(body) % 32)
    with pytest.raises(MalformedPayload, match="length prefix"):
        nc.wx_decrypt(key, _raw_wx(key, body), D_D["receive_id"])


@pytest.mark.parametrize("cut", [4, 24])
def test_truncated_ciphertext_is_refused(cut: int) -> None:
    raw = base64.b64decode(D_E_ENCRYPT)[:-cut]
    with pytest.raises(MalformedPayload, match="truncated"):
        nc.wx_decrypt(nc.wx_key(D_D["aes_key"]), base64.b64encode(raw).decode(), D_D["receive_id"])
    with pytest.raises(MalformedPayload, match="truncated"):
        nc.feishu_decrypt(nc.feishu_key(F_KEY), base64.b64encode(base64.b64decode(F_C_ENCRYPT)[:-cut]).decode())


def test_not_base64_is_refused() -> None:
    with pytest.raises(MalformedPayload, match="base64"):
        nc.wx_decrypt(nc.wx_key(D_D["aes_key"]), "not base64!", D_D["receive_id"])
    with pytest.raises(MalformedPayload, match="base64"):
        nc.feishu_decrypt(nc.feishu_key(F_KEY), "%%%")


def test_wrong_feishu_key_is_bad_padding() -> None:
    with pytest.raises(MalformedPayload, match="bad padding"):
        nc.feishu_decrypt(nc.feishu_key("another key"), F_C_ENCRYPT)
