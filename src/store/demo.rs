//! Demo data for `serve --demo`: two logins, three addresses and a catalogue of phones,
//! laptops, appliances and groceries, enough to click through a checkout by hand.

use chrono::{DateTime, Utc};

use super::{Db, NewSku, NewUser};
use crate::domain::{Address, Money, Role, SkuId, SkuStatus, Username};

/// (username, password, role) of the demo accounts, printed at start-up.
pub const DEMO_LOGINS: [(&str, &str, Role); 2] = [
    ("demo", "demo-pass", Role::User),
    ("admin", "admin-pass", Role::Admin),
];

/// (name, brand, category, spec, price in fen, units in stock).
const CATALOGUE: &[(&str, &str, &str, &str, i64, i32)] = &[
    (
        "华为 Mate 60 Pro 12GB+512GB 雅丹黑",
        "华为",
        "手机",
        r#"{"颜色":"雅丹黑","版本":"12GB+512GB"}"#,
        699_900,
        120,
    ),
    (
        "华为 nova 12 8GB+256GB 樱语白",
        "华为",
        "手机",
        r#"{"颜色":"樱语白","版本":"8GB+256GB"}"#,
        249_900,
        200,
    ),
    (
        "小米 14 16GB+512GB 岩石青",
        "小米",
        "手机",
        r#"{"颜色":"岩石青","版本":"16GB+512GB"}"#,
        449_900,
        150,
    ),
    (
        "Redmi K70 12GB+256GB 墨羽",
        "小米",
        "手机",
        r#"{"颜色":"墨羽","版本":"12GB+256GB"}"#,
        249_900,
        300,
    ),
    (
        "Apple iPhone 15 128GB 蓝色",
        "Apple",
        "手机",
        r#"{"颜色":"蓝色","版本":"128GB"}"#,
        599_900,
        80,
    ),
    (
        "Apple iPhone 15 Pro 256GB 原色钛金属",
        "Apple",
        "手机",
        r#"{"颜色":"原色钛金属","版本":"256GB"}"#,
        899_900,
        60,
    ),
    (
        "OPPO Find X7 16GB+512GB 大漠银月",
        "OPPO",
        "手机",
        r#"{"颜色":"大漠银月","版本":"16GB+512GB"}"#,
        459_900,
        90,
    ),
    (
        "vivo X100 12GB+256GB 星迹蓝",
        "vivo",
        "手机",
        r#"{"颜色":"星迹蓝","版本":"12GB+256GB"}"#,
        399_900,
        110,
    ),
    (
        "荣耀 Magic6 16GB+512GB 绒黑色",
        "荣耀",
        "手机",
        r#"{"颜色":"绒黑色","版本":"16GB+512GB"}"#,
        479_900,
        70,
    ),
    (
        "一加 12 16GB+512GB 留白",
        "一加",
        "手机",
        r#"{"颜色":"留白","版本":"16GB+512GB"}"#,
        479_900,
        50,
    ),
    (
        "联想 小新 Pro 14 2024 酷睿Ultra5 32GB 1TB",
        "联想",
        "笔记本",
        r#"{"处理器":"Ultra5","内存":"32GB"}"#,
        599_900,
        40,
    ),
    (
        "ThinkPad X1 Carbon 2024 Ultra7 32GB 1TB",
        "联想",
        "笔记本",
        r#"{"处理器":"Ultra7","内存":"32GB"}"#,
        1_299_900,
        15,
    ),
    (
        "Apple MacBook Air 13 M3 16GB 512GB 午夜色",
        "Apple",
        "笔记本",
        r#"{"芯片":"M3","内存":"16GB"}"#,
        949_900,
        35,
    ),
    (
        "华为 MateBook 14 2024 Ultra5 16GB 1TB",
        "华为",
        "笔记本",
        r#"{"处理器":"Ultra5","内存":"16GB"}"#,
        579_900,
        45,
    ),
    (
        "戴尔 灵越 16Plus i7 16GB 1TB",
        "戴尔",
        "笔记本",
        r#"{"处理器":"i7","内存":"16GB"}"#,
        629_900,
        25,
    ),
    (
        "华硕 天选5 Pro R9 RTX4060 游戏本",
        "华硕",
        "笔记本",
        r#"{"处理器":"R9","显卡":"RTX4060"}"#,
        799_900,
        30,
    ),
    (
        "小米 Redmi Pad Pro 12.1英寸 8GB+128GB",
        "小米",
        "平板",
        r#"{"版本":"8GB+128GB"}"#,
        149_900,
        160,
    ),
    (
        "Apple iPad Air 11 M2 128GB 深空灰",
        "Apple",
        "平板",
        r#"{"颜色":"深空灰","版本":"128GB"}"#,
        479_900,
        55,
    ),
    (
        "华为 MatePad 11.5 S 8GB+256GB",
        "华为",
        "平板",
        r#"{"版本":"8GB+256GB"}"#,
        239_900,
        75,
    ),
    (
        "索尼 WH-1000XM5 无线降噪耳机 黑色",
        "索尼",
        "耳机",
        r#"{"颜色":"黑色"}"#,
        249_900,
        90,
    ),
    (
        "Apple AirPods Pro 第二代 USB-C",
        "Apple",
        "耳机",
        r#"{"接口":"USB-C"}"#,
        189_900,
        140,
    ),
    (
        "华为 FreeBuds Pro 3 冰霜银",
        "华为",
        "耳机",
        r#"{"颜色":"冰霜银"}"#,
        149_900,
        130,
    ),
    (
        "漫步者 Lollipods Pro 真无线耳机",
        "漫步者",
        "耳机",
        r#"{"颜色":"白色"}"#,
        29_900,
        400,
    ),
    (
        "小米 手环8 NFC版 亮黑色",
        "小米",
        "智能穿戴",
        r#"{"颜色":"亮黑色"}"#,
        27_900,
        500,
    ),
    (
        "华为 WATCH GT 4 46mm 山茶棕",
        "华为",
        "智能穿戴",
        r#"{"尺寸":"46mm"}"#,
        148_800,
        100,
    ),
    (
        "Apple Watch Series 9 GPS 45mm 午夜色",
        "Apple",
        "智能穿戴",
        r#"{"尺寸":"45mm"}"#,
        319_900,
        60,
    ),
    (
        "美的 1.5匹 新一级能效 变频冷暖空调挂机",
        "美的",
        "家电",
        r#"{"匹数":"1.5匹"}"#,
        269_900,
        40,
    ),
    (
        "格力 云佳 1.5匹 新一级能效 空调挂机",
        "格力",
        "家电",
        r#"{"匹数":"1.5匹"}"#,
        299_900,
        35,
    ),
    (
        "海尔 476升 十字对开门 一级能效冰箱",
        "海尔",
        "家电",
        r#"{"容量":"476升"}"#,
        399_900,
        20,
    ),
    (
        "小天鹅 10公斤 滚筒洗衣机 超薄全嵌",
        "小天鹅",
        "家电",
        r#"{"容量":"10公斤"}"#,
        249_900,
        30,
    ),
    (
        "戴森 V12 Detect Slim 无绳吸尘器",
        "戴森",
        "家电",
        r#"{"型号":"V12"}"#,
        449_000,
        25,
    ),
    (
        "九阳 破壁机 1.75L 家用豆浆机",
        "九阳",
        "厨房电器",
        r#"{"容量":"1.75L"}"#,
        39_900,
        220,
    ),
    (
        "苏泊尔 球釜IH电饭煲 4L",
        "苏泊尔",
        "厨房电器",
        r#"{"容量":"4L"}"#,
        59_900,
        180,
    ),
    (
        "美的 微波炉 20L 变频 家用",
        "美的",
        "厨房电器",
        r#"{"容量":"20L"}"#,
        45_900,
        150,
    ),
    (
        "小熊 电热饭盒 双层 1L",
        "小熊",
        "厨房电器",
        r#"{"容量":"1L"}"#,
        12_900,
        350,
    ),
    (
        "飞利浦 电动牙刷 HX6730 钻石亮白",
        "飞利浦",
        "个护",
        r#"{"型号":"HX6730"}"#,
        39_900,
        260,
    ),
    (
        "松下 吹风机 EH-NA9G 纳诺怡",
        "松下",
        "个护",
        r#"{"型号":"EH-NA9G"}"#,
        99_900,
        120,
    ),
    (
        "罗技 MX Master 3S 无线鼠标 石墨黑",
        "罗技",
        "电脑配件",
        r#"{"颜色":"石墨黑"}"#,
        69_900,
        240,
    ),
    (
        "罗技 MX Keys S 无线键盘",
        "罗技",
        "电脑配件",
        r#"{"颜色":"石墨黑"}"#,
        79_900,
        180,
    ),
    (
        "三星 990 PRO 2TB NVMe 固态硬盘",
        "三星",
        "电脑配件",
        r#"{"容量":"2TB"}"#,
        139_900,
        90,
    ),
    (
        "闪迪 至尊高速 128GB U盘 USB3.2",
        "闪迪",
        "电脑配件",
        r#"{"容量":"128GB"}"#,
        5_990,
        800,
    ),
    (
        "小米 27英寸 4K 显示器",
        "小米",
        "显示器",
        r#"{"尺寸":"27英寸","分辨率":"4K"}"#,
        169_900,
        65,
    ),
    (
        "明基 PD2705U 27英寸 设计显示器",
        "明基",
        "显示器",
        r#"{"尺寸":"27英寸"}"#,
        329_900,
        30,
    ),
    (
        "任天堂 Switch OLED 续航增强版 白色",
        "任天堂",
        "游戏",
        r#"{"颜色":"白色"}"#,
        229_900,
        85,
    ),
    (
        "索尼 PlayStation 5 光驱版",
        "索尼",
        "游戏",
        r#"{"版本":"光驱版"}"#,
        389_900,
        45,
    ),
    (
        "三只松鼠 每日坚果 750g 30袋",
        "三只松鼠",
        "食品",
        r#"{"规格":"750g"}"#,
        12_990,
        600,
    ),
    (
        "蒙牛 特仑苏 纯牛奶 250ml×16盒",
        "蒙牛",
        "食品",
        r#"{"规格":"250ml×16"}"#,
        6_590,
        700,
    ),
    (
        "农夫山泉 饮用天然水 550ml×24瓶",
        "农夫山泉",
        "食品",
        r#"{"规格":"550ml×24"}"#,
        2_990,
        900,
    ),
    (
        "五常 稻花香大米 5kg",
        "五常",
        "食品",
        r#"{"规格":"5kg"}"#,
        8_990,
        500,
    ),
    (
        "金龙鱼 食用油 5L 黄金比例",
        "金龙鱼",
        "食品",
        r#"{"规格":"5L"}"#,
        7_490,
        450,
    ),
    (
        "云南白药 牙膏 180g 留兰香",
        "云南白药",
        "日用",
        r#"{"规格":"180g"}"#,
        3_290,
        650,
    ),
    (
        "维达 抽纸 3层100抽×24包",
        "维达",
        "日用",
        r#"{"规格":"24包"}"#,
        5_990,
        550,
    ),
    (
        "李宁 超轻20 跑步鞋 男款 42码",
        "李宁",
        "运动",
        r#"{"尺码":"42"}"#,
        59_900,
        140,
    ),
    (
        "安踏 氮科技 跑鞋 女款 37码",
        "安踏",
        "运动",
        r#"{"尺码":"37"}"#,
        49_900,
        160,
    ),
    (
        "迪卡侬 瑜伽垫 8mm 加厚",
        "迪卡侬",
        "运动",
        r#"{"厚度":"8mm"}"#,
        9_990,
        300,
    ),
    (
        "得力 A4 复印纸 70g 500张×8包",
        "得力",
        "办公",
        r#"{"规格":"8包"}"#,
        13_900,
        200,
    ),
];

/// The first demo SKU's id; the rest follow one by one.
pub const DEMO_FIRST_SKU_ID: i64 = 100_000_001;

/// Seeds the demo accounts, addresses and catalogue. Idempotent: existing users and SKUs
/// are left as they are, and addresses are only added to a shopper who has none.
/// `password_hash` turns a password into a bcrypt hash (slow; the caller picks the cost).
pub async fn seed_demo(
    db: &Db,
    now: DateTime<Utc>,
    password_hash: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    for (name, password, role) in DEMO_LOGINS {
        let username = Username::parse(name)?;
        if db.find_login(&username).await?.is_some() {
            continue;
        }
        let roles = if role == Role::Admin {
            vec![Role::User, Role::Admin]
        } else {
            vec![Role::User]
        };
        db.create_user(NewUser {
            username: &username,
            password_hash: &password_hash(password)?,
            roles: &roles,
            now,
        })
        .await?;
    }

    let demo = Username::parse("demo")?;
    if db.addresses(&demo).await?.is_empty() {
        for (contact, phone, province, city, area, line, alias, is_default) in [
            (
                "张三",
                "13800138000",
                "广东省",
                "深圳市",
                "南山区",
                "科技园南区 深圳湾科技生态园 10栋 1201",
                "公司",
                "1",
            ),
            (
                "张三",
                "13800138000",
                "北京市",
                "北京市",
                "海淀区",
                "中关村大街 27号 中关村大厦 806",
                "家",
                "0",
            ),
            (
                "李四",
                "13900139000",
                "上海市",
                "上海市",
                "浦东新区",
                "世纪大道 100号 环球金融中心 45层",
                "父母家",
                "0",
            ),
        ] {
            db.add_address(&Address {
                id: 0,
                username: demo.to_string(),
                provinceid: Some(province.into()),
                cityid: Some(city.into()),
                areaid: Some(area.into()),
                phone: Some(phone.into()),
                address: Some(format!("{province}{city}{area}{line}")),
                contact: Some(contact.into()),
                is_default: Some(is_default.into()),
                alias: Some(alias.into()),
            })
            .await?;
        }
    }

    for (i, (name, brand, category, spec, price, num)) in CATALOGUE.iter().enumerate() {
        let id = SkuId::new(DEMO_FIRST_SKU_ID + i as i64)?;
        db.insert_sku(
            &NewSku {
                id,
                name: (*name).to_owned(),
                price: Money::from_fen(*price),
                num: *num,
                brand_name: (*brand).to_owned(),
                category_name: (*category).to_owned(),
                spec: (*spec).to_owned(),
                image: "/static/sku.svg".to_owned(),
                status: SkuStatus::OnSale,
            },
            now,
        )
        .await?;
    }
    Ok(())
}
